import type { PeerId, Stream } from "@libp2p/interface";
import type { ConnectionManager } from "@libp2p/interface-internal";
import { peerIdFromString } from "@libp2p/peer-id";
import type { Transaction } from "bitcoinjs-lib";
import type { Msat } from "../../../payments/amount.ts";
import { type ChannelParams, channelId, PayerChannel, type SignedState } from "../../../payments/channel/channel.ts";
import {
  ChannelClosedError,
  ChannelError,
  RemoteChannelError,
  UnknownChannelError,
} from "../../../payments/channel/errors.ts";
import type { ChannelKeys } from "../../../payments/channel/keys.ts";
import type { ChannelNetwork } from "../../../payments/channel/script.ts";
import type { ChannelStore } from "../../../payments/channel/store.ts";
import { buildFunding, type Utxo } from "../../../payments/channel/transactions.ts";
import { AbortedError, errorMessage } from "../../../util/errors.ts";
import { abortable, type FrameStream, readMessage, WIRE_VERSION, wireStream, writeMessage } from "../../wire.ts";
import {
  AcceptMessageSchema,
  ClosedMessageSchema,
  MAX_FRAME_BYTES,
  OpenedMessageSchema,
  StateMessageSchema,
  wireMsat,
} from "./messages.ts";
import { abortFailure, answer, type CallOptions, callDeadline, payFailure } from "./replies.ts";
import { PaySession } from "./session.ts";

/**
 * The payer side of /infernet/channel/1.0.0. Payments of a channel share one stream (a `PaySession`)
 * and may be pipelined: each is signed on top of the last one sent, those signed while a write is out
 * leave together in one frame, and an ack of update n settles every update up to n. Before updates
 * are written the newest is stored in SQLite as "pending"; the acknowledged state is stored when the
 * ack arrives, before any payment resolves. When the payee does not answer in time the caller gets `ChannelTimeoutError`
 * and the channel is marked unsure: the next operation first asks the payee for its state (`sync`)
 * and continues from the one it acknowledged.
 */

/** Updates sent and not yet acknowledged on one channel; a further payment waits for the oldest. */
export const MAX_UNACKED_UPDATES = 64;

export interface PayerSettings {
  store: ChannelStore;
  keys: ChannelKeys;
  network: ChannelNetwork;
  connectionManager: Pick<ConnectionManager, "openStream">;
  /** Calls in flight; the service aborts them all when it stops. */
  calls: Set<AbortController>;
}

export interface OpenChannelOptions {
  capacitySats: bigint;
  /** Fee of every commitment (default chosen by the service). */
  feeSats: bigint;
  /** Block height from which the payer alone can take the funds back. */
  refundHeight: number;
  /** P2WPKH coins that fund the channel, with their signers (the wallet's). */
  utxos: Utxo[];
  /** Fee of the funding transaction. */
  fundingFeeSats: bigint;
  /** Where the funding transaction's change goes. */
  changeOutput: Uint8Array;
}

interface Entry {
  channel: PayerChannel;
  peer: PeerId;
  session: PaySession | undefined;
  /** A sync is needed before the next update: an earlier one may or may not have reached the payee. */
  unsure: boolean;
  /** Updates in flight, oldest first (for MAX_UNACKED_UPDATES). */
  inFlight: Promise<unknown>[];
  /** The sync in progress, shared by concurrent payments. */
  syncing: Promise<unknown> | undefined;
  /** The pay session being opened, shared by concurrent payments. */
  opening: Promise<PaySession> | undefined;
  /** Closing or closed: no more payments. */
  closed: boolean;
}

export class ChannelPayer {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly settings: PayerSettings,
    private readonly protocol: string,
    private readonly defaultDeadlineMs: number,
  ) {}

  /** Proposes a channel to `peer`, builds and signs the funding transaction once it accepts; returns it to broadcast. */
  async open(
    peer: PeerId,
    options: OpenChannelOptions,
    call: CallOptions = {},
  ): Promise<{ params: ChannelParams; fundingTx: Transaction }> {
    const { store, keys, network } = this.settings;
    const signer = keys.newKey();
    return this.call(peer, call, async (lp, signal) => {
      const open = {
        v: WIRE_VERSION,
        type: "open",
        network,
        capacitySats: Number(options.capacitySats),
        feeSats: Number(options.feeSats),
        refundHeight: options.refundHeight,
        payerKey: signer.publicKey,
      };
      await writeMessage(lp, open, { signal });
      const accept = answer(await readMessage(lp, AcceptMessageSchema, { signal }), peer);
      const terms = { payerKey: signer.publicKey, payeeKey: accept.payeeKey, refundHeight: options.refundHeight };
      const funding = buildFunding({ ...options, terms, feeSats: options.fundingFeeSats });
      const params: ChannelParams = {
        ...terms,
        id: channelId(funding.txid, funding.vout),
        network,
        fundingTxid: funding.txid,
        fundingVout: funding.vout,
        capacitySats: options.capacitySats,
        feeSats: options.feeSats,
      };
      // Stored before the payee sees it: whatever happens next, this node can refund it.
      store.insert({ params, role: "payer", peer: peer.toString(), fundingTx: funding.tx.toBuffer() });
      try {
        await writeMessage(
          lp,
          { v: WIRE_VERSION, type: "funding", tx: funding.tx.toBuffer(), vout: funding.vout },
          { signal },
        );
        const opened = answer(await readMessage(lp, OpenedMessageSchema, { signal }), peer);
        if (opened.channelId !== params.id)
          throw new RemoteChannelError(
            "protocol",
            peer.toString(),
            `${peer} opened ${opened.channelId}, not ${params.id}`,
          );
      } catch (err) {
        // Not opened (or unknown if it was): the funding transaction must not be broadcast; it is never paid into.
        store.setStatus(params.id, "closed");
        throw err;
      }
      this.entries.set(params.id, newEntry(new PayerChannel(params, signer), peer));
      return { params, fundingTx: funding.tx };
    });
  }

  /** Pays `amountMsat` more over channel `id`; resolves once the payee has stored and acknowledged it. */
  async pay(id: string, amountMsat: Msat, memo: string, call: CallOptions = {}): Promise<SignedState> {
    const entry = this.entry(id);
    while (entry.syncing || entry.unsure) {
      entry.syncing ??= this.syncEntry(entry, call).finally(() => {
        entry.syncing = undefined;
      });
      await entry.syncing;
    }
    while (entry.inFlight.length >= MAX_UNACKED_UPDATES) await entry.inFlight[0]?.catch(() => {});
    const sent = this.send(entry, amountMsat, memo, call);
    entry.inFlight.push(sent);
    try {
      return await sent;
    } finally {
      entry.inFlight.splice(entry.inFlight.indexOf(sent), 1);
    }
  }

  private async send(entry: Entry, amountMsat: Msat, memo: string, call: CallOptions): Promise<SignedState> {
    using deadline = callDeadline(
      call,
      this.defaultDeadlineMs,
      this.settings.calls,
      `${entry.peer} did not acknowledge the payment`,
    );
    const { signal } = deadline;
    let session: PaySession | undefined;
    try {
      session = entry.session && !entry.session.failed ? entry.session : await this.session(entry, signal);
      if (signal.aborted) throw abortFailure(signal);
      if (session.failed) throw session.failed;
      // From here to the queue nothing waits: updates are signed and queued in sequence order,
      // whichever payments run at once (the session stores the newest as pending before writing).
      return await session.send(entry.channel.update(amountMsat, memo), signal);
    } catch (err) {
      const failure = signal.aborted ? abortFailure(signal) : payFailure(err, entry.peer.toString());
      // The session's onFail rolls the channel back, once, for every update it carried.
      session?.fail(failure);
      throw failure;
    }
  }

  /** The channel's pay session, opened once for all the payments waiting for it. */
  private session(entry: Entry, signal: AbortSignal): Promise<PaySession> {
    entry.opening ??= this.openSession(entry, signal).finally(() => {
      entry.opening = undefined;
    });
    return abortable(entry.opening, signal);
  }

  private async openSession(entry: Entry, signal: AbortSignal): Promise<PaySession> {
    const stream = await this.stream(entry.peer, signal);
    const { store } = this.settings;
    const { channel } = entry;
    const session = new PaySession(stream, wireStream(stream, MAX_FRAME_BYTES), entry.peer.toString(), channel.id, {
      // Written before the update leaves: a crash never forgets a state the payee may hold.
      beforeSend: (newest) => store.savePending(channel.id, newest),
      // In ack order: the acknowledged state is written before the payments resolve.
      onAck: (sequence) => {
        const previous = channel.acked.sequence;
        store.saveState(channel.id, previous, channel.acknowledged(sequence));
      },
      // Every update after the acknowledged state is void. Unless the payee refused one (then it
      // looked at none after it), it may hold some of them: the next payment syncs first.
      onFail: (err, inFlight) => {
        channel.rollback();
        if (entry.session === session) entry.session = undefined;
        const refused = err instanceof RemoteChannelError && err.code !== "protocol" && err.code !== "timeout";
        if (inFlight > 0 && !refused) entry.unsure = true;
        // The payee closed it (alone, or it expired): it takes no more, and the store says so.
        if (err instanceof RemoteChannelError && (err.code === "closed" || err.code === "expired")) {
          entry.closed = true;
          store.setStatus(channel.id, "closing");
        }
      },
    });
    entry.session = session;
    return session;
  }

  /** Asks the payee for its latest state and continues from it (see PayerChannel.adopt). */
  async sync(id: string, call: CallOptions = {}): Promise<SignedState> {
    const entry = this.entry(id);
    await this.syncEntry(entry, call);
    return entry.channel.acked;
  }

  private async syncEntry(entry: Entry, call: CallOptions): Promise<void> {
    const { channel } = entry;
    const reply = await this.call(entry.peer, call, async (lp, signal) => {
      await writeMessage(lp, { v: WIRE_VERSION, type: "query", channelId: channel.id }, { signal });
      return answer(await readMessage(lp, StateMessageSchema, { signal }), entry.peer);
    });
    const previous = channel.acked.sequence;
    const adopted = channel.adopt({
      sequence: reply.sequence,
      paidMsat: wireMsat(reply.paidMsat, "paidMsat"),
      signature: reply.signature,
    });
    if (adopted.sequence !== previous) this.settings.store.saveState(channel.id, previous, adopted);
    entry.unsure = false;
    if (reply.status !== "open") {
      this.settings.store.setStatus(channel.id, reply.status);
      entry.closed = true;
    }
  }

  /** The cooperative close of the acknowledged state with `feeSats`: the payee signs, this returns it complete. */
  async close(id: string, feeSats: bigint, call: CallOptions = {}): Promise<Transaction> {
    const entry = this.entry(id);
    if (entry.unsure) await this.syncEntry(entry, call);
    await Promise.allSettled(entry.inFlight);
    entry.session?.end();
    entry.session = undefined;
    const proposal = entry.channel.proposeClose(feeSats);
    const reply = await this.call(entry.peer, call, async (lp, signal) => {
      const close = {
        v: WIRE_VERSION,
        type: "close",
        channelId: id,
        feeSats: Number(feeSats),
        tx: proposal.tx.toBuffer(),
        signature: proposal.signature,
      };
      await writeMessage(lp, close, { signal });
      return answer(await readMessage(lp, ClosedMessageSchema, { signal }), entry.peer);
    });
    const tx = entry.channel.completeClose(proposal.tx, proposal.signature, reply.signature);
    this.settings.store.setStatus(id, "closing", tx.toBuffer());
    entry.closed = true;
    return tx;
  }

  /** The refund of channel `id` to `output` (valid from its refund height), whatever the channel's status. */
  refund(id: string, output: Uint8Array, feeSats: bigint): Transaction {
    const entry = this.entry(id, false);
    const tx = entry.channel.refund(output, feeSats);
    this.settings.store.setStatus(id, "closing", tx.toBuffer());
    entry.closed = true;
    return tx;
  }

  /**
   * Channel `id` this node pays into, from memory or the store (a stored pending update makes it
   * unsure); unless `open` is false, only while it is open.
   */
  private entry(id: string, open = true): Entry {
    const cached = this.entries.get(id);
    if (cached) {
      if (open && cached.closed) throw new ChannelClosedError(`channel ${id} is closing`);
      return cached;
    }
    const record = this.settings.store.get(id);
    if (record?.role !== "payer") throw new UnknownChannelError(`this node pays into no channel ${id}`);
    if (open && record.status !== "open") throw new ChannelClosedError(`channel ${id} is ${record.status}`);
    const signer = this.settings.keys.key(record.params.payerKey);
    if (!signer) throw new ChannelError(`the key of channel ${id} is not in this node's key store`);
    const entry = newEntry(new PayerChannel(record.params, signer, record.state), peerIdFromString(record.peer));
    entry.unsure = record.pending !== undefined;
    entry.closed = record.status !== "open";
    this.entries.set(id, entry);
    return entry;
  }

  private async stream(peer: PeerId, signal: AbortSignal): Promise<Stream> {
    try {
      return await this.settings.connectionManager.openStream(peer, this.protocol, { signal });
    } catch (cause) {
      if (signal.aborted) throw abortFailure(signal);
      throw new RemoteChannelError(
        "protocol",
        peer.toString(),
        `cannot open a channel stream to ${peer}: ${errorMessage(cause)}`,
        { cause },
      );
    }
  }

  /** One request/answer stream to `peer` within the call's deadline. */
  private async call<T>(
    peer: PeerId,
    call: CallOptions,
    body: (lp: FrameStream, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    using deadline = callDeadline(call, this.defaultDeadlineMs, this.settings.calls, `${peer} did not answer`);
    const { signal } = deadline;
    let stream: Stream | undefined;
    try {
      stream = await this.stream(peer, signal);
      const result = await body(wireStream(stream, MAX_FRAME_BYTES), signal);
      await abortable(stream.close(), signal);
      return result;
    } catch (err) {
      stream?.abort(new AbortedError("the call failed"));
      throw signal.aborted ? abortFailure(signal) : payFailure(err, peer.toString());
    }
  }
}

function newEntry(channel: PayerChannel, peer: PeerId): Entry {
  return {
    channel,
    peer,
    session: undefined,
    unsure: false,
    inFlight: [],
    syncing: undefined,
    opening: undefined,
    closed: false,
  };
}
