import type { PeerId } from "@libp2p/interface";
import { Transaction } from "bitcoinjs-lib";
import { formatMsat, type Msat } from "../payments/amount.ts";
import type { Chain } from "../payments/chain/index.ts";
import { type ChannelParams, mustCloseBy, type SignedState } from "../payments/channel/channel.ts";
import { ChannelRefusedError } from "../payments/channel/errors.ts";
import type { ChannelKeys, Signer } from "../payments/channel/keys.ts";
import { Escrow } from "../payments/escrow.ts";
import { InsufficientFundsError, Ledger } from "../payments/ledger.ts";
import type { Wallet, WalletKey } from "../payments/wallet/index.ts";
import type { Store } from "../store/db.ts";
import { ConfigError, errorMessage } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import type { ChannelService, ChannelView, ReceivedPayment } from "./protocols/channel/index.ts";

/**
 * A node's side of payments that is not an aggregator's: channel keys from its wallet, the chain's
 * height for the channels' timelocks, and the books for what arrives over its channels. A payment
 * says what it is for in its memo: `deposit` (a client's credit at this aggregator), `bond` (a
 * provider's security deposit here), anything else income for this node's own work. Each is posted
 * once, keyed by its channel state, in the transaction that stores that state.
 */
const log = logger("payments");

/** A payment's memo for a client's credit at an aggregator. */
export const DEPOSIT_MEMO = "deposit";
/** A payment's memo for a provider's bond at an aggregator. */
export const BOND_MEMO = "bond";
/** A payment's memo for an aggregator's payout of a provider's earnings. */
export const EARNINGS_MEMO = "earnings";
/** How often the chain's tip is read (the channels' refund heights are judged against it). */
export const TIP_POLL_MS = 30_000;
/** A height read longer ago than this is read again before a channel opens or a payment counts. */
export const TIP_FRESH_MS = 2 * TIP_POLL_MS;
/** Channel keys past the last one known to be used that `key()` still looks at (one opened and not stored). */
export const KEY_LOOKAHEAD = 16;

/**
 * Throws a ChannelRefusedError (sent to the payer) while the funding of channel `params` has fewer
 * than `needed` confirmations; the payer pays again once it has.
 */
export async function fundingConfirmed(
  chain: Chain | undefined,
  params: ChannelParams,
  needed: number,
  signal?: AbortSignal,
): Promise<void> {
  if (needed === 0) return;
  if (!chain) throw new ConfigError("this node has no chain to check a channel's funding on");
  const tx = await chain.transaction(params.fundingTxid, signal).catch((err) => {
    throw new ChannelRefusedError(`cannot read channel ${params.id}'s funding from the chain: ${errorMessage(err)}`);
  });
  const have = tx?.confirmations ?? 0;
  if (have < needed) {
    throw new ChannelRefusedError(
      `channel ${params.id}'s funding has ${have} of the ${needed} confirmation${needed === 1 ? "" : "s"} this node needs before payments over it count: pay again once it has`,
    );
  }
}

/** Posts what arrived over a channel: called by the payee inside the transaction that stores the state. */
export function bookPayment(escrow: Escrow, p: ReceivedPayment): void {
  const reference = `${p.channelId}:${p.sequence}`;
  if (p.memo === DEPOSIT_MEMO) escrow.deposit(p.peer, p.amountMsat, "channel", reference);
  else if (p.memo === BOND_MEMO) escrow.postBond(p.peer, p.amountMsat, "channel", reference);
  else escrow.income(p.peer, p.amountMsat, "channel", reference);
}

/**
 * Channel keys from the wallet's channel branch: a new channel takes the next index (one past the
 * channels stored and the keys handed out since start), and a stored channel's key is found again by
 * deriving up to KEY_LOOKAHEAD past that.
 */
export class WalletChannelKeys implements ChannelKeys {
  private issued = 0;
  private readonly known = new Map<string, Signer>();

  constructor(
    private readonly wallet: () => WalletKey,
    private readonly store: Store,
  ) {}

  newKey(): Signer {
    const signer = this.wallet().channelKey(this.used() + this.issued++);
    this.known.set(Buffer.from(signer.publicKey).toString("hex"), signer);
    return signer;
  }

  key(publicKey: Uint8Array): Signer | undefined {
    const hex = Buffer.from(publicKey).toString("hex");
    const cached = this.known.get(hex);
    if (cached) return cached;
    const upTo = this.used() + this.issued + KEY_LOOKAHEAD;
    for (let i = 0; i < upTo; i++) {
      const signer = this.wallet().channelKey(i);
      const h = Buffer.from(signer.publicKey).toString("hex");
      this.known.set(h, signer);
      if (h === hex) return signer;
    }
    return undefined;
  }

  private used(): number {
    return this.store.db.query<{ n: number }, []>("SELECT count(*) AS n FROM channels").get()?.n ?? 0;
  }
}

/**
 * A payee's safety: every channel paying this node that has reached its `mustCloseBy` height (some
 * blocks before the payer may take the funds back alone) is closed with the latest state, and a
 * close the chain has not taken yet is published again. Returns the txids the chain took.
 */
export async function closeExpiring(
  channel: ChannelService,
  chain: Chain,
  height: number,
  signal?: AbortSignal,
): Promise<string[]> {
  const published: string[] = [];
  for (const c of channel.channels()) {
    if (c.role !== "payee" || c.state.sequence === 0) continue;
    const expiring = c.status === "open" && height >= mustCloseBy(c.params.refundHeight);
    const unpublished = c.status === "closing" && c.closeTx !== undefined;
    if (!expiring && !unpublished) continue;
    try {
      const tx = expiring ? channel.closeUnilaterally(c.params.id) : (c.closeTx as Uint8Array);
      const txid = Transaction.fromBuffer(Buffer.from(tx)).getId();
      if (!expiring && (await chain.transaction(txid, signal).catch(() => undefined))) continue;
      published.push(await publish(chain, tx, signal));
      log.warn("channel closed before its refund height", { channel: c.params.id, height, txid });
    } catch (err) {
      log.error("channel close not published", { channel: c.params.id, err: errorMessage(err) });
    }
  }
  return published;
}

/**
 * The chain's height for the channels' timelocks. While the node has channels that are open or
 * closing it is read every TIP_POLL_MS (each height closes the channels paying it that must close);
 * a node without channels reads nothing, so one that never uses payments never dials a chain.
 * `known()` is what money decisions use: a height read within TIP_FRESH_MS, read again if older,
 * or a refusal when the chain cannot answer, never a guess.
 */
export class ChainTip {
  private height = 0;
  private readAt = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  /** Whether the last read failed (a failure is a warning once, then quiet until the chain answers). */
  private failing = false;
  private lastError = "";
  /** Called with each height read (the node closes expiring channels from it). */
  onHeight: ((height: number) => Promise<unknown> | undefined) | undefined;

  constructor(
    private readonly chain: Chain | undefined,
    /** Whether the node has channels that need the height read (default: always). */
    private readonly needed: () => boolean = () => true,
  ) {}

  start(): void {
    if (!this.chain || this.timer) return;
    const tick = () => {
      if (this.needed()) void this.read();
    };
    tick();
    this.timer = setInterval(tick, TIP_POLL_MS);
    this.timer.unref?.();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The height as last read: 0 until the chain first answers. */
  current(): number {
    return this.height;
  }

  /**
   * A height read within TIP_FRESH_MS (reading it now if the last read is older); a
   * ChannelRefusedError naming the chain's failure when there is none to trust.
   */
  async known(signal?: AbortSignal): Promise<number> {
    if (this.readAt > 0 && Date.now() - this.readAt < TIP_FRESH_MS) return this.height;
    await this.read(signal);
    if (this.readAt > 0 && Date.now() - this.readAt < TIP_FRESH_MS) return this.height;
    throw new ChannelRefusedError(
      `this node cannot read the chain's height (${this.lastError || "no chain configured"}): no channel opens or payment counts until it can`,
    );
  }

  async read(signal?: AbortSignal): Promise<number> {
    if (!this.chain) return this.height;
    try {
      this.height = await this.chain.tipHeight(signal);
      this.readAt = Date.now();
      if (this.failing) log.info("chain tip read again", { height: this.height });
      this.failing = false;
      await this.onHeight?.(this.height);
    } catch (err) {
      this.lastError = errorMessage(err);
      (this.failing ? log.debug : log.warn)("chain tip not read", { err: this.lastError });
      this.failing = true;
    }
    return this.height;
  }
}

/**
 * Puts a funding transaction on the chain, or finds it there already (the payer may have broadcast
 * it first): throws when the chain neither takes nor knows it.
 */
export async function publish(chain: Chain, tx: Uint8Array, signal?: AbortSignal): Promise<string> {
  const hex = Buffer.from(tx).toString("hex");
  const txid = Transaction.fromBuffer(Buffer.from(tx)).getId();
  try {
    return await chain.broadcast(hex, signal);
  } catch (err) {
    if (await chain.transaction(txid, signal).catch(() => undefined)) return txid;
    throw err;
  }
}

/** The books of a node: its ledger and the escrow rules over it. */
export function nodeBooks(store: Store): { ledger: Ledger; escrow: Escrow } {
  const ledger = new Ledger(store);
  return { ledger, escrow: new Escrow(ledger) };
}

/** Every commitment's fee, sats: enough for a one-input, two-output transaction at a few sat/vB. */
export const COMMITMENT_FEE_SATS = 1_000n;
/** A new channel's life: the payer may take the funds back alone after this many blocks (about 30 days). */
export const CHANNEL_LIFETIME_BLOCKS = 30 * 144;
/** The funding transaction's fee rate when the chain gives no estimate (regtest): sat per 1,000 vB. */
export const FALLBACK_FEE_RATE = 2_000n;

/** What `NodeChannels` needs of the node. */
export interface NodeChannelsInit {
  channel: ChannelService;
  wallet: (() => Wallet) | undefined;
  chain: Chain | undefined;
  tip: ChainTip;
  /** sat per 1,000 vB for funding transactions (default: the chain's estimate, else FALLBACK_FEE_RATE). */
  feeRate?: (signal?: AbortSignal) => Promise<bigint>;
}

/**
 * The node's channels as a user drives them (`infernet wallet fund|pay|close`): opening one funds it
 * from the on-chain wallet and publishes the funding; paying picks the open channel to that peer
 * with the most room; closing publishes the close both sides signed.
 */
export class NodeChannels {
  constructor(private readonly init: NodeChannelsInit) {}

  async open(peer: PeerId, capacitySats: bigint, signal?: AbortSignal): Promise<ChannelParams> {
    const { chain, channel, tip } = this.init;
    const wallet = this.init.wallet?.();
    if (!wallet || !chain) throw new ConfigError("this node has no wallet and chain to fund a channel from");
    const feeRate = await (this.init.feeRate ?? ((s) => chain.feeRate(6, s)))(signal).catch(() => FALLBACK_FEE_RATE);
    const funding = await wallet.fundingInputs(capacitySats, feeRate, undefined, signal);
    const height = await tip.known(signal);
    const { params, fundingTx } = await channel.openChannel(
      peer,
      {
        capacitySats,
        feeSats: COMMITMENT_FEE_SATS,
        refundHeight: height + CHANNEL_LIFETIME_BLOCKS,
        utxos: funding.inputs.map((c) => ({ txid: c.txid, vout: c.vout, valueSats: c.value, signer: c.signer })),
        fundingFeeSats: funding.fee,
        changeOutput: funding.change?.script ?? wallet.key.change(0).script,
      },
      signal ? { signal } : {},
    );
    await publish(chain, fundingTx.toBuffer(), signal);
    log.info("channel opened", { channel: params.id, peer: peer.toString(), capacitySats: capacitySats.toString() });
    return params;
  }

  /** Pays `amount` to `peer` over this node's open channel to it with the most room left. */
  async pay(peer: string, amount: Msat, memo: string, signal?: AbortSignal): Promise<SignedState> {
    const best = this.channelTo(peer, amount);
    if (!best) {
      throw new InsufficientFundsError(
        `no open channel to ${peer} has ${formatMsat(amount)} left`,
        `channel:${peer}`,
        amount,
        0n,
        {
          hint: "open one with `infernet wallet fund <sats> --to <peer>`",
        },
      );
    }
    return await this.init.channel.pay(best.params.id, amount, memo, signal ? { signal } : {});
  }

  /** Closes a channel this node pays into, cooperatively, and publishes the close. */
  async close(channelId: string, signal?: AbortSignal): Promise<string> {
    const { chain, channel } = this.init;
    if (!chain) throw new ConfigError("this node has no chain to publish a close on");
    const tx = await channel.closeChannel(channelId, COMMITMENT_FEE_SATS, signal ? { signal } : {});
    return await publish(chain, tx.toBuffer(), signal);
  }

  /** This node's open channel paying `peer` with room for `amount` (the roomiest), if any. */
  channelTo(peer: string, amount: Msat): ChannelView | undefined {
    const room = (c: ChannelView) => (c.params.capacitySats - c.params.feeSats) * 1_000n - c.state.paidMsat;
    return this.init.channel
      .channels()
      .filter((c) => c.role === "payer" && c.peer === peer && c.status === "open" && room(c) >= amount)
      .sort((a, b) => (room(b) > room(a) ? 1 : -1))[0];
  }

  list(): ChannelView[] {
    return this.init.channel.channels();
  }
}
