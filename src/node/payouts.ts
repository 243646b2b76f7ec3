import { randomUUID } from "node:crypto";
import { peerIdFromString } from "@libp2p/peer-id";
import { type Msat, msat } from "../payments/amount.ts";
import { account } from "../payments/ledger.ts";
import type { LightningRail } from "../payments/lightning/lightning-rail.ts";
import { PaymentFailedError } from "../payments/lightning/lnd-errors.ts";
import { errorMessage } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import type { AggregatorPayments } from "./aggregator/payments.ts";
import { EARNINGS_MEMO, type NodeChannels } from "./payments.ts";
import type { ChannelService, ChannelView } from "./protocols/channel/index.ts";

/**
 * An aggregator paying providers what they earned (aggregator/payments.ts `payable`: earnings of
 * jobs that ended, so a conviction can still claw back the rest) over a channel from it to each
 * provider, opened from its wallet when none has room. A payout is booked before it is sent, keyed
 * by the channel's total after it (`payout:channel:<channel>:<paid msat>`), so a crash never pays
 * twice; a payment the provider refused, or did not get as a sync shows, is booked back, and the
 * next try of the same channel total is a new attempt with its own keys (`<channel>:<msat>#<n>`).
 */
const log = logger("aggregator:payouts");

/** Payouts are looked at this often. */
export const PAYOUT_INTERVAL_MS = 5_000;
/** Smaller earnings wait for more (a payment costs the provider a stored state). */
export const MIN_PAYOUT_MSAT = 10_000n;
/** A payout channel holds at least this (more when one payout needs more). */
export const PAYOUT_CHANNEL_SATS = 100_000n;

export interface PayoutsInit {
  payments: AggregatorPayments;
  channels: NodeChannels;
  channel: ChannelService;
  intervalMs?: number;
  /** The aggregator's Lightning: a provider that announces a node key is paid there by keysend. */
  lightning?: LightningRail;
  /** A provider's announced Lightning node key, if it has one. */
  nodeKey?: (provider: string) => string | undefined;
}

export class Payouts {
  private timer: ReturnType<typeof setInterval> | undefined;
  private running: Promise<void> | undefined;
  private readonly lifetime = new AbortController();

  constructor(private readonly init: PayoutsInit) {}

  start(): void {
    this.timer = setInterval(
      () => void this.round().catch((err) => log.warn("payout round failed", { err: errorMessage(err) })),
      this.init.intervalMs ?? PAYOUT_INTERVAL_MS,
    );
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.lifetime.abort();
    await this.running;
  }

  /** One pass over every provider with earnings to pay (one at a time; a pass in progress is joined). */
  round(): Promise<void> {
    if (this.running) return this.running;
    const pass = this.pass().finally(() => {
      if (this.running === pass) this.running = undefined;
    });
    this.running = pass;
    return pass;
  }

  private async pass(): Promise<void> {
    for (const [provider, amount] of this.init.payments.payable()) {
      if (this.lifetime.signal.aborted) return;
      if (amount < MIN_PAYOUT_MSAT) continue;
      await this.payOne(provider, amount).catch((err) =>
        log.warn("payout not made", { provider, msat: amount.toString(), err: errorMessage(err) }),
      );
    }
  }

  /**
   * Pays `provider` by keysend to its node, booked first under a fresh reference; booked back only
   * when LND reports the payment failed (an unsure outcome, a timeout, stays booked: never paid twice).
   */
  private async keysend(rail: LightningRail, provider: string, nodeKey: string, amount: Msat): Promise<void> {
    const { payments } = this.init;
    const reference = `${provider}:${randomUUID()}`;
    payments.escrow.payOut(provider, amount, "lightning", reference);
    try {
      const receipt = await rail.pay(nodeKey, amount, EARNINGS_MEMO, this.lifetime.signal);
      log.info("paid out by keysend", { provider, msat: amount.toString(), hash: receipt.reference });
    } catch (err) {
      if (err instanceof PaymentFailedError) {
        payments.ledger.post({
          idem: `payout-undo:lightning:${reference}`,
          reason: "payout",
          reference,
          moves: [{ from: account("outside", "lightning"), to: account("earnings", provider), amount: msat(amount) }],
        });
      }
      throw err;
    }
  }

  private async payOne(provider: string, amount: Msat): Promise<void> {
    const nodeKey = this.init.lightning ? this.init.nodeKey?.(provider) : undefined;
    if (this.init.lightning && nodeKey) return await this.keysend(this.init.lightning, provider, nodeKey, amount);
    const signal = this.lifetime.signal;
    const { channel, payments } = this.init;
    let view = this.init.channels.channelTo(provider, amount);
    if (!view) {
      const sats = amount / 1_000n + 1n > PAYOUT_CHANNEL_SATS ? amount / 1_000n + 1n : PAYOUT_CHANNEL_SATS;
      const params = await this.init.channels.open(peerIdFromString(provider), sats, signal);
      view = channel.channels().find((c) => c.params.id === params.id);
      if (!view) throw new Error(`channel ${params.id} was opened but is not stored`);
    }
    // A payment sent before and not acknowledged: learn what the provider has first.
    if (view.pending) await channel.sync(view.params.id, { signal });
    const current = channel.channels().find((c) => c.params.id === view.params.id) as ChannelView;
    const after = current.state.paidMsat + amount;
    const reference = attemptReference(payments, `${current.params.id}:${after}`);
    payments.escrow.payOut(provider, amount, "channel", reference);
    try {
      await channel.pay(current.params.id, amount, EARNINGS_MEMO, { signal });
      log.info("paid out", { provider, msat: amount.toString(), channel: current.params.id });
    } catch (err) {
      // Booked back only when the provider's own state shows it did not get it; unsure stays booked
      // (a provider paid late is owed nothing more; one paid twice could not be paid back).
      const state = await channel.sync(current.params.id, { signal }).catch(() => undefined);
      if (state && state.paidMsat < after) {
        payments.ledger.post({
          idem: `payout-undo:channel:${reference}`,
          reason: "payout",
          reference,
          moves: [{ from: account("outside", "channel"), to: account("earnings", provider), amount: msat(amount) }],
        });
      }
      throw err;
    }
  }
}

/**
 * The reference of the next attempt at a channel total: the total itself, then `#1`, `#2`... after
 * each attempt that was booked back (a retry under the old key would be skipped as a duplicate while
 * its payment still went out: paid, and still owed).
 */
function attemptReference(payments: AggregatorPayments, total: string): string {
  let n = 0;
  const ref = () => (n === 0 ? total : `${total}#${n}`);
  while (payments.ledger.has(`payout-undo:channel:${ref()}`)) n++;
  return ref();
}
