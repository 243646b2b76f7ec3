import type { Connection, Stream } from "@libp2p/interface";
import type { Msat } from "../../../payments/amount.ts";
import { type ChannelParams, type ChannelUpdate, channelId, PayeeChannel } from "../../../payments/channel/channel.ts";
import {
  ChannelClosedError,
  ChannelError,
  ChannelRefusedError,
  UnknownChannelError,
} from "../../../payments/channel/errors.ts";
import type { ChannelKeys } from "../../../payments/channel/keys.ts";
import { checkFunding, checkTerms } from "../../../payments/channel/open.ts";
import type { ChannelNetwork } from "../../../payments/channel/script.ts";
import type { ChannelStore } from "../../../payments/channel/store.ts";
import { AbortedError, errorMessage, InvalidInputError, TimeoutError } from "../../../util/errors.ts";
import { logger } from "../../../util/logger.ts";
import {
  abortable,
  encode,
  errorFrame,
  type FrameStream,
  ProtocolError,
  readMessage,
  timeoutSignal,
  WIRE_VERSION,
  wireStream,
  writeMessage,
} from "../../wire.ts";
import { answerError, InboundJob } from "../inbound.ts";
import {
  type CloseMessage,
  FirstMessageSchema,
  FundingMessageSchema,
  MAX_FRAME_BYTES,
  type OpenMessage,
  type PayMessage,
  PayMessageSchema,
  wireMsat,
} from "./messages.ts";
import { Outbox } from "./outbox.ts";

/**
 * The payee side of /infernet/channel/1.0.0. Every update is checked by `PayeeChannel.check`, written
 * to SQLite, and only then applied and acknowledged. Updates of one channel are handled one at a time
 * (a lock per channel), whichever stream they arrive on. Only the peer that opened a channel may pay,
 * query or close it: to anyone else it does not exist.
 */
const log = logger("node:channel");

/** The first frame of a stream must arrive this soon. */
export const FIRST_FRAME_TIMEOUT_MS = 10_000;
/** An open stream (terms, then the funding transaction) must complete within this. */
export const OPEN_TIMEOUT_MS = 60_000;
/** A pay stream with no update for this long is closed (the payer opens a new one). */
export const PAY_IDLE_TIMEOUT_MS = 60_000;
/** Longest the `expected` hook may take for one update (the channel's next updates wait for it). */
export const EXPECTED_TIMEOUT_MS = 5_000;
/** Longest wait to flush a final frame before the stream is reset. */
export const CLOSE_TIMEOUT_MS = 5_000;

/** A payment the payee has accepted and stored. */
export interface ReceivedPayment {
  channelId: string;
  peer: string;
  sequence: number;
  amountMsat: Msat;
  paidMsat: Msat;
  memo: string;
}

export interface PayeeSettings {
  store: ChannelStore;
  keys: ChannelKeys;
  network: ChannelNetwork;
  /** The chain's height; may read it, and throws (a refusal) when it is not known. */
  height: () => number | Promise<number>;
  maxCapacitySats: bigint;
  maxFeeSats: bigint;
  /** What a payment with this memo must be (undefined: any increase); may look it up. */
  expected?: (payment: {
    channelId: string;
    peer: string;
    memo: string;
  }) => Msat | undefined | Promise<Msat | undefined>;
  /**
   * Called for each payment inside the SQLite transaction that stores it, before it is acknowledged
   * (synchronous, on the same database: what it writes commits with the payment). Throwing refuses it.
   */
  onPayment?: (payment: ReceivedPayment) => void;
  /** Called with a frame's payments once they are stored and booked (committed), before the ack. */
  onStored?: (payments: ReceivedPayment[]) => void;
  /** Checks the funding transaction further (broadcast, confirmed); throws to refuse the channel. */
  checkFunding?: (tx: Uint8Array, params: ChannelParams) => Promise<void>;
  /**
   * Before the first payment over a channel counts: throws (a refusal sent to the payer) while its
   * funding lacks the confirmations this node needs; once it passed, it is not asked again.
   */
  fundingConfirmed?: (params: ChannelParams) => Promise<void>;
}

interface Entry {
  channel: PayeeChannel;
  peer: string;
  /** The tail of this channel's chain of updates: each waits for the one before it. */
  lock: Promise<unknown>;
  /** Its funding had the confirmations `fundingConfirmed` asks for. */
  confirmed: boolean;
}

export class ChannelPayee {
  private readonly entries = new Map<string, Entry>();
  private readonly jobs = new Set<AbortController>();

  constructor(private readonly settings: PayeeSettings) {}

  stop(): void {
    for (const job of this.jobs) job.abort(new AbortedError("the node is stopping"));
  }

  readonly handle = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString();
    const lp = wireStream(stream, MAX_FRAME_BYTES);
    using job = new InboundJob(stream, this.jobs, FIRST_FRAME_TIMEOUT_MS, "channel message");
    try {
      const first = await readMessage(lp, FirstMessageSchema, { signal: job.signal });
      if (first.type === "open") await this.open(first, peer, lp, job);
      else if (first.type === "pay") await this.paySession(first, peer, lp, job);
      else if (first.type === "query") await this.query(first.channelId, peer, lp, job);
      else await this.close(first, peer, lp, job);
      await job.finish(CLOSE_TIMEOUT_MS);
    } catch (err) {
      const reason = job.reason(err);
      if (job.clientGone) {
        stream.abort(job.gone);
        return;
      }
      const code = codeOf(reason);
      if (code === "internal") log.warn("channel request failed", { peer, error: reason });
      else log.debug("channel request refused", { peer, code, message: errorMessage(reason) });
      await answerError(stream, lp, errorFrame(code, errorMessage(reason)), CLOSE_TIMEOUT_MS);
    }
  };

  /** The stored channel `id` of `peer` as this payee, loaded once. */
  private entry(id: string, peer: string): Entry {
    let entry = this.entries.get(id);
    if (!entry) {
      const record = this.settings.store.get(id);
      if (record?.role !== "payee") throw new UnknownChannelError(`no channel ${id} is known here`);
      const signer = this.settings.keys.key(record.params.payeeKey);
      if (!signer) throw new ChannelError(`the key of channel ${id} is not in this node's key store`);
      const channel = new PayeeChannel(record.params, signer, record.state, record.status !== "open");
      entry = { channel, peer: record.peer, lock: Promise.resolve(), confirmed: false };
      this.entries.set(id, entry);
    }
    if (entry.peer !== peer) throw new UnknownChannelError(`no channel ${id} is known here`);
    return entry;
  }

  /** Runs `body` after every earlier operation on the channel has finished. */
  private locked<T>(entry: Entry, body: () => Promise<T> | T): Promise<T> {
    const run = entry.lock.then(body, body);
    entry.lock = run.catch(() => {});
    return run;
  }

  private async open(message: OpenMessage, peer: string, lp: FrameStream, job: InboundJob): Promise<void> {
    job.startBudget(OPEN_TIMEOUT_MS);
    const { settings } = this;
    const proposed = {
      network: message.network,
      capacitySats: BigInt(message.capacitySats),
      feeSats: BigInt(message.feeSats),
      refundHeight: message.refundHeight,
      payerKey: message.payerKey,
    };
    checkTerms(proposed, {
      network: settings.network,
      height: await settings.height(),
      maxCapacitySats: settings.maxCapacitySats,
      maxFeeSats: settings.maxFeeSats,
    });
    const key = settings.keys.newKey();
    await writeMessage(lp, { v: WIRE_VERSION, type: "accept", payeeKey: key.publicKey }, { signal: job.signal });
    const funding = await readMessage(lp, FundingMessageSchema, { signal: job.signal });
    const terms = { ...proposed, payeeKey: key.publicKey };
    const txid = checkFunding(funding.tx, funding.vout, terms);
    const params: ChannelParams = {
      ...terms,
      id: channelId(txid, funding.vout),
      fundingTxid: txid,
      fundingVout: funding.vout,
    };
    await settings.checkFunding?.(funding.tx, params);
    if (settings.store.get(params.id)) throw new ChannelRefusedError(`channel ${params.id} already exists`);
    settings.store.insert({ params, role: "payee", peer, fundingTx: funding.tx });
    this.entries.set(params.id, {
      channel: new PayeeChannel(params, key),
      peer,
      lock: Promise.resolve(),
      confirmed: false,
    });
    log.info("channel opened", { peer, channel: params.id, capacitySats: String(params.capacitySats) });
    await writeMessage(lp, { v: WIRE_VERSION, type: "opened", channelId: params.id }, { signal: job.signal });
  }

  /**
   * Frames of updates until the payer closes its side: each frame's updates checked, the newest valid
   * one stored, then acknowledged (one ack for the frame's accepted updates), in order; a refused
   * update is answered with an error frame after the ack of those before it. Acks go out through an
   * `Outbox`, so the next frame is checked while the last ack is being written.
   */
  private async paySession(first: PayMessage, peer: string, lp: FrameStream, job: InboundJob): Promise<void> {
    const outbox = new Outbox<Uint8Array>(
      lp,
      (frames) => frames,
      () => job.clientLeft(),
    );
    let message = first;
    try {
      for (;;) {
        job.startBudget(PAY_IDLE_TIMEOUT_MS);
        const { sequence, refusal } = await this.pay(message, peer);
        if (sequence !== undefined) {
          outbox.push(encode({ v: WIRE_VERSION, type: "ack", channelId: message.channelId, sequence }));
        }
        if (refusal) throw refusal;
        try {
          message = await readMessage(lp, PayMessageSchema, { signal: job.signal });
        } catch (err) {
          // The payer closed its side after its last update: the session is over.
          if (err instanceof ProtocolError && err.code === "ended") return;
          throw err;
        }
      }
    } finally {
      // Acks already due leave before anything else (an error frame, the close).
      await outbox.drained();
    }
  }

  /** One frame's updates: the newest accepted sequence (undefined: none) and why the next was refused. */
  private pay(message: PayMessage, peer: string): Promise<{ sequence: number | undefined; refusal?: Error }> {
    const entry = this.entry(message.channelId, peer);
    return this.locked(entry, async () => {
      const { updates, refusal: unreadable } = fromWire(message);
      const expectedMsat: (Msat | undefined)[] = [];
      for (const u of updates) expectedMsat.push(await this.expected({ channelId: u.channelId, peer, memo: u.memo }));
      const { channel } = entry;
      if (!entry.confirmed && this.settings.fundingConfirmed) {
        await this.settings.fundingConfirmed(channel.params);
        entry.confirmed = true;
      }
      const height = await this.settings.height();
      const checked = channel.checkBatch(updates, { height, expectedMsat });
      const refusal = checked.refusal ?? unreadable;
      const newest = checked.accepted.at(-1);
      if (!newest) return { sequence: undefined, ...(refusal ? { refusal } : {}) };
      // Written before it is applied and acknowledged: an acknowledged payment is never lost. The
      // listener runs inside the same SQLite transaction (a ledger entry it writes commits with the
      // state, or neither does and the payments are refused).
      const { onPayment, onStored, store } = this.settings;
      const previous = channel.state.sequence;
      const received = checked.accepted.map(
        ({ state, increase }, i): ReceivedPayment => ({
          channelId: channel.id,
          peer,
          sequence: state.sequence,
          amountMsat: increase,
          paidMsat: state.paidMsat,
          memo: updates[i]?.memo ?? "",
        }),
      );
      if (onPayment) {
        store.transaction(() => {
          store.saveState(channel.id, previous, newest.state);
          for (const payment of received) onPayment(payment);
        });
      } else store.saveState(channel.id, previous, newest.state);
      channel.apply(newest.state);
      onStored?.(received);
      return { sequence: newest.state.sequence, ...(refusal ? { refusal } : {}) };
    });
  }

  /** The caller's `expected` amount, within EXPECTED_TIMEOUT_MS (the channel's updates wait for it). */
  private async expected(payment: { channelId: string; peer: string; memo: string }): Promise<Msat | undefined> {
    if (!this.settings.expected) return undefined;
    using deadline = timeoutSignal(EXPECTED_TIMEOUT_MS, "deciding what the payment is due");
    try {
      return await abortable(Promise.resolve(this.settings.expected(payment)), deadline.signal);
    } catch (cause) {
      throw new ChannelError(`cannot tell what payment ${payment.memo.slice(0, 64)} is due: ${errorMessage(cause)}`, {
        cause,
      });
    }
  }

  private async query(id: string, peer: string, lp: FrameStream, job: InboundJob): Promise<void> {
    const entry = this.entry(id, peer);
    const record = this.settings.store.get(id);
    const { state } = entry.channel;
    await writeMessage(
      lp,
      {
        v: WIRE_VERSION,
        type: "state",
        channelId: id,
        sequence: state.sequence,
        paidMsat: state.paidMsat.toString(),
        signature: state.signature,
        status: record?.status ?? "open",
      },
      { signal: job.signal },
    );
  }

  private async close(message: CloseMessage, peer: string, lp: FrameStream, job: InboundJob): Promise<void> {
    const entry = this.entry(message.channelId, peer);
    const signature = await this.locked(entry, () => {
      const record = this.settings.store.get(message.channelId);
      if (record?.status !== "open") throw new ChannelClosedError(`channel ${message.channelId} is ${record?.status}`);
      const signed = entry.channel.signClose({
        tx: message.tx,
        signature: message.signature,
        feeSats: BigInt(message.feeSats),
      });
      this.settings.store.setStatus(message.channelId, "closing", signed.tx.toBuffer());
      log.info("channel closing", { peer, channel: message.channelId, txid: signed.tx.getId() });
      return signed.signature;
    });
    await writeMessage(
      lp,
      { v: WIRE_VERSION, type: "closed", channelId: message.channelId, signature },
      { signal: job.signal },
    );
  }

  /** The payee's own close: the latest commitment with both signatures, stored before it is returned. */
  closeUnilaterally(id: string): Uint8Array {
    const record = this.settings.store.get(id);
    if (record?.role !== "payee") throw new UnknownChannelError(`no channel ${id} is known here`);
    const entry = this.entry(id, record.peer);
    const tx = entry.channel.closeUnilaterally().toBuffer();
    this.settings.store.setStatus(id, "closing", tx);
    return tx;
  }
}

/** The error frame code for a failure. */
function codeOf(err: unknown): string {
  if (err instanceof ChannelError) return err.code;
  if (err instanceof ProtocolError) return err.code === "unsupported-version" ? "unsupported-version" : "malformed";
  if (err instanceof InvalidInputError) return "malformed";
  if (err instanceof TimeoutError) return "timeout";
  return "internal";
}

/** A frame's updates as amounts, up to the first whose amounts are out of range (then why). */
function fromWire(message: PayMessage): { updates: ChannelUpdate[]; refusal: Error | undefined } {
  const updates: ChannelUpdate[] = [];
  for (const u of message.updates) {
    try {
      updates.push({
        channelId: message.channelId,
        sequence: u.sequence,
        paidMsat: wireMsat(u.paidMsat, "paidMsat"),
        amountMsat: wireMsat(u.amountMsat, "amountMsat"),
        tx: u.tx,
        signature: u.signature,
        memo: u.memo,
      });
    } catch (err) {
      return { updates, refusal: err as Error };
    }
  }
  return { updates, refusal: undefined };
}
