import type { PeerId, Startable } from "@libp2p/interface";
import type { ConnectionManager, Registrar } from "@libp2p/interface-internal";
import type { Transaction } from "bitcoinjs-lib";
import type { Msat } from "../../../payments/amount.ts";
import {
  type ChannelParams,
  DEFAULT_MAX_CAPACITY_SATS,
  DEFAULT_MAX_COMMITMENT_FEE_SATS,
  type SignedState,
} from "../../../payments/channel/channel.ts";
import { type ChannelKeys, KeyRing } from "../../../payments/channel/keys.ts";
import { type ChannelNetwork, DEFAULT_CHANNEL_NETWORK } from "../../../payments/channel/script.ts";
import { type ChannelRecord, ChannelStore } from "../../../payments/channel/store.ts";
import type { Store } from "../../../store/db.ts";
import { ProtocolLifecycle } from "../lifecycle.ts";
import { positive } from "../settings.ts";
import { ChannelPayee, type PayeeSettings } from "./payee.ts";
import { ChannelPayer, type OpenChannelOptions } from "./payer.ts";
import type { CallOptions } from "./replies.ts";

/**
 * /infernet/channel/1.0.0: Bitcoin payment channels between two peers (client -> aggregator,
 * aggregator -> provider, client -> provider), Spilman-style: the payer funds a 2-of-2 output and
 * pays by signing ever larger commitments; the payee closes with the latest. See messages.ts for the
 * frames, payer.ts and payee.ts for each side, payments/channel for the transactions and checks.
 */
export const CHANNEL_PROTOCOL = "/infernet/channel/1.0.0";
/** Channel streams open at once on one connection, each way (a pay stream per channel, plus opens and queries). */
export const MAX_INBOUND_STREAMS = 64;
export const MAX_OUTBOUND_STREAMS = 64;
/** A payer's deadline for one payment's acknowledgement (or an open, query or close) when the caller gives none. */
export const DEFAULT_CALL_TIMEOUT_MS = 10_000;

export { ChannelTimeoutError, RemoteChannelError } from "../../../payments/channel/errors.ts";
export type { ReceivedPayment } from "./payee.ts";
export type { OpenChannelOptions } from "./payer.ts";
export type { CallOptions } from "./replies.ts";

export interface ChannelInit {
  /** The node's database (channels are in its `channels` table). */
  store: Store;
  /** Where channel keys come from (default: an in-memory `KeyRing`, lost with the process). */
  keys?: ChannelKeys;
  /** The Bitcoin network channels are on (default regtest); a peer proposing another is refused. */
  network?: ChannelNetwork;
  /**
   * The chain's current height (the payee refuses payments from a channel's `mustCloseBy`); may
   * read it, and throws (a refusal sent to the payer) when it is not known.
   */
  height: () => number | Promise<number>;
  /** Serve the payee side (default true). A node that only pays need not. */
  payee?: boolean;
  /** Largest channel this node accepts as payee (default DEFAULT_MAX_CAPACITY_SATS). */
  maxCapacitySats?: bigint;
  /** Highest commitment fee this node accepts as payee (default DEFAULT_MAX_COMMITMENT_FEE_SATS). */
  maxFeeSats?: bigint;
  /** Payer side: deadline of each call when the caller gives none (default DEFAULT_CALL_TIMEOUT_MS). */
  callTimeoutMs?: number;
  expected?: PayeeSettings["expected"];
  onPayment?: PayeeSettings["onPayment"];
  onStored?: PayeeSettings["onStored"];
  checkFunding?: PayeeSettings["checkFunding"];
  fundingConfirmed?: PayeeSettings["fundingConfirmed"];
}

export interface ChannelComponents {
  registrar: Registrar;
  connectionManager: ConnectionManager;
  peerId: PeerId;
}

/** What a channel looks like from this node. */
export type ChannelView = ChannelRecord;

export interface ChannelService extends Startable {
  /** Payer: opens a channel to `peer`; returns its terms and the signed funding transaction to broadcast. */
  openChannel(
    peer: PeerId,
    options: OpenChannelOptions,
    call?: CallOptions,
  ): Promise<{ params: ChannelParams; fundingTx: Transaction }>;
  /**
   * Payer: pays `amountMsat` over channel `channelId` (memo: what it is for). Resolves with the new
   * state once the payee stored and acknowledged it; `RemoteChannelError` when refused,
   * `ChannelTimeoutError` when it did not answer (the next call syncs first).
   */
  pay(channelId: string, amountMsat: Msat, memo?: string, call?: CallOptions): Promise<SignedState>;
  /** Payer: asks the payee for its latest state and continues from it. */
  sync(channelId: string, call?: CallOptions): Promise<SignedState>;
  /** Payer: cooperative close with `feeSats`; returns the close transaction signed by both. */
  closeChannel(channelId: string, feeSats: bigint, call?: CallOptions): Promise<Transaction>;
  /** Payer: the refund transaction (valid from the refund height) paying `output`. */
  refund(channelId: string, output: Uint8Array, feeSats: bigint): Transaction;
  /** Payee: the latest commitment signed by both, raw bytes to broadcast. */
  closeUnilaterally(channelId: string): Uint8Array;
  /** Every channel this node has, as stored. */
  channels(): ChannelView[];
}

class DefaultChannelService implements ChannelService {
  private readonly life: ProtocolLifecycle;
  private readonly payer: ChannelPayer;
  private readonly payee: ChannelPayee;
  private readonly store: ChannelStore;

  constructor(components: ChannelComponents, init: ChannelInit) {
    this.store = new ChannelStore(init.store);
    const keys = init.keys ?? new KeyRing();
    const network = init.network ?? DEFAULT_CHANNEL_NETWORK;
    this.payee = new ChannelPayee({
      store: this.store,
      keys,
      network,
      height: init.height,
      maxCapacitySats: init.maxCapacitySats ?? DEFAULT_MAX_CAPACITY_SATS,
      maxFeeSats: init.maxFeeSats ?? DEFAULT_MAX_COMMITMENT_FEE_SATS,
      ...(init.expected ? { expected: init.expected } : {}),
      ...(init.onPayment ? { onPayment: init.onPayment } : {}),
      ...(init.onStored ? { onStored: init.onStored } : {}),
      ...(init.checkFunding ? { checkFunding: init.checkFunding } : {}),
      ...(init.fundingConfirmed ? { fundingConfirmed: init.fundingConfirmed } : {}),
    });
    this.life = new ProtocolLifecycle({
      registrar: components.registrar,
      protocol: CHANNEL_PROTOCOL,
      server: init.payee === false ? undefined : this.payee,
      maxInboundStreams: MAX_INBOUND_STREAMS,
      maxOutboundStreams: MAX_OUTBOUND_STREAMS,
    });
    this.payer = new ChannelPayer(
      { store: this.store, keys, network, connectionManager: components.connectionManager, calls: this.life.calls },
      CHANNEL_PROTOCOL,
      positive("callTimeoutMs", init.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS),
    );
  }

  readonly [Symbol.toStringTag] = "@infernet/channel";

  start(): Promise<void> {
    return this.life.start();
  }

  stop(): Promise<void> {
    return this.life.stop();
  }

  isStarted(): boolean {
    return this.life.isStarted();
  }

  private running(): void {
    if (this.life.stopped) throw this.life.stoppedError();
  }

  async openChannel(peer: PeerId, options: OpenChannelOptions, call?: CallOptions) {
    this.running();
    return this.payer.open(peer, options, call);
  }

  async pay(channelId: string, amountMsat: Msat, memo = "", call?: CallOptions): Promise<SignedState> {
    this.running();
    return this.payer.pay(channelId, amountMsat, memo, call);
  }

  async sync(channelId: string, call?: CallOptions): Promise<SignedState> {
    this.running();
    return this.payer.sync(channelId, call);
  }

  async closeChannel(channelId: string, feeSats: bigint, call?: CallOptions): Promise<Transaction> {
    this.running();
    return this.payer.close(channelId, feeSats, call);
  }

  refund(channelId: string, output: Uint8Array, feeSats: bigint): Transaction {
    return this.payer.refund(channelId, output, feeSats);
  }

  closeUnilaterally(channelId: string): Uint8Array {
    return this.payee.closeUnilaterally(channelId);
  }

  channels(): ChannelView[] {
    return this.store.list();
  }
}

export function channelProtocol(init: ChannelInit): (components: ChannelComponents) => ChannelService {
  return (components) => new DefaultChannelService(components, init);
}
