import type { JobSpec } from "../../jobs/spec.ts";
import { type Msat, msat } from "../../payments/amount.ts";
import { account } from "../../payments/ledger.ts";
import { SqliteEscrowStore } from "../../payments/lightning/escrow-store.ts";
import type { LightningRail } from "../../payments/lightning/lightning-rail.ts";
import type { Store } from "../../store/db.ts";
import { ConfigError, errorMessage, InvalidInputError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import { timeoutSignal } from "../wire.ts";
import type { AggregatorPayments } from "./payments.ts";
import { type AggregatorStore, scopedSpec } from "./store.ts";

/**
 * A job paid over Lightning instead of from the client's credit here: one hold invoice per job
 * (payments/lightning/lightning-rail.ts), for the job's quote.
 *
 * 1. The quote (`pay: "lightning"`) makes the hold, keyed by the job's scoped idempotency key (the
 *    job does not exist yet), and answers its invoice. The client's node pays it; the payment is
 *    held along the route, not yet the aggregator's.
 * 2. The upload waits (up to FUND_WAIT_MS) until the hold is funded; the transaction that stores
 *    the job books the held amount as the client's deposit and locks it in the job's escrow, as a
 *    channel deposit would be (the ledger's `outside:lightning` account).
 * 3. When the job has ended and its escrow was settled in the ledger (verified copies paid, the
 *    rest back to the client's credit here), the hold is settled if any copy was paid: the client's
 *    payment completes, and what the job did not spend stays its credit here; if nothing was paid
 *    the amount leaves the client's credit and the hold is cancelled, so the client's node gets it
 *    all back. A hold never used for a job is cancelled once its invoice expires.
 *
 * A held HTLC must be resolved before it nears its CLTV expiry (LND's 80 blocks, ~13 hours), so a
 * job paid this way must end within MAX_LIGHTNING_JOB_MS.
 */
const log = logger("aggregator:lightning");

/** How long a client has to pay a hold invoice (its expiry). */
export const HOLD_EXPIRY_SECONDS = 600;
/** Longest an upload waits for its hold to be funded. */
export const FUND_WAIT_MS = 60_000;
/** Longest deadline a job paid over Lightning may have (well inside a held HTLC's CLTV expiry). */
export const MAX_LIGHTNING_JOB_MS = 6 * 3_600_000;
/** How often ended jobs' holds are settled or cancelled. */
export const HOLD_TICK_MS = 1_000;

interface HoldRow {
  job_id: string;
  aggregator_job: string | null;
  expires_at: number;
}

export class AggregatorLightning {
  private readonly holds: SqliteEscrowStore;
  private timer: ReturnType<typeof setInterval> | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly rail: LightningRail,
    private readonly db: Store,
    private readonly payments: AggregatorPayments,
    private readonly store: AggregatorStore,
    private readonly now: () => number = Date.now,
  ) {
    this.holds = new SqliteEscrowStore(db.db);
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), HOLD_TICK_MS);
    this.timer.unref?.();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** The hold's key for a job not stored yet: its idempotency key, scoped to the client. */
  key(spec: JobSpec, client: string): string {
    return scopedSpec(spec, client).idempotencyKey;
  }

  /** Makes (or finds) the job's hold for `amount`: its BOLT11 invoice. */
  async hold(spec: JobSpec, client: string, amount: Msat, signal?: AbortSignal): Promise<string> {
    if (spec.deadlineMs > this.now() + MAX_LIGHTNING_JOB_MS) {
      throw new InvalidInputError(
        `a job paid over Lightning must end within ${MAX_LIGHTNING_JOB_MS / 3_600_000} hours (a held payment expires)`,
        { hint: "give a shorter --deadline, or pay from a channel deposit" },
      );
    }
    return (await this.rail.hold(this.key(spec, client), amount, HOLD_EXPIRY_SECONDS, signal)).invoice;
  }

  /** Whether this job has a hold (the client chose Lightning); waits until it is funded when it has. */
  async funded(spec: JobSpec, client: string, signal: AbortSignal): Promise<boolean> {
    const key = this.key(spec, client);
    if (!this.holds.get(key)) return false;
    using deadline = timeoutSignal(FUND_WAIT_MS, "waiting for the job's Lightning payment");
    await this.rail.waitFunded(key, AbortSignal.any([signal, deadline.signal]));
    return true;
  }

  /**
   * In the transaction that stores job `jobId`: the funded hold becomes the client's deposit, then
   * the quote is locked from it (`AggregatorPayments.lock`).
   */
  book(jobId: string, spec: JobSpec, client: string): void {
    const key = this.key(spec, client);
    const hold = this.holds.get(key);
    if (!hold) throw new ConfigError(`job ${jobId} has no Lightning hold to book`);
    this.payments.escrow.deposit(client, hold.amount, "lightning", hold.paymentHash);
    this.db.db.query("UPDATE lightning_escrow SET aggregator_job = ? WHERE job_id = ?").run(jobId, key);
  }

  /** Settles or cancels every hold whose job has ended (or that expired unused); one pass at a time. */
  tick(): Promise<void> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<void> {
    const open = this.db.db
      .query<HoldRow, []>("SELECT job_id, aggregator_job, expires_at FROM lightning_escrow WHERE state = 'open'")
      .all();
    for (const h of open) {
      try {
        if (h.aggregator_job === null) {
          if (h.expires_at < this.now()) await this.rail.refund(h.job_id);
          continue;
        }
        await this.resolve(h.job_id, h.aggregator_job);
      } catch (err) {
        log.warn("hold not resolved yet", { hold: h.job_id, err: errorMessage(err) });
      }
    }
  }

  private async resolve(key: string, jobId: string): Promise<void> {
    const job = this.store.jobs.job(jobId);
    if (job.state !== "verified" && job.state !== "failed") return;
    // The ledger first: the job's escrow back to the client's credit (the coordinator's refund).
    if (this.payments.escrow.escrowed(jobId) > 0n) return;
    const hold = this.holds.get(key);
    if (!hold) return;
    const spent = this.payments.ledger.txns({ jobId, reason: "release" }).length > 0;
    if (spent) {
      await this.rail.release(key);
      log.info("hold settled", { job: jobId, msat: String(hold.amount) });
      return;
    }
    // Nothing was paid: the amount leaves the client's credit here, then the hold is cancelled (in
    // this order: a credit spent meanwhile on another job is settled instead of given back twice).
    const idem = `lightning-return:${hold.paymentHash}`;
    if (!this.payments.ledger.has(idem)) {
      const client = this.store.meta(jobId).client;
      if (this.payments.escrow.credit(client) < hold.amount) {
        await this.rail.release(key);
        log.info("hold settled: its credit was spent on other jobs", { job: jobId });
        return;
      }
      this.payments.ledger.post({
        idem,
        reason: "refund",
        jobId,
        reference: hold.paymentHash,
        moves: [{ from: account("client", client), to: account("outside", "lightning"), amount: msat(hold.amount) }],
      });
    }
    await this.rail.refund(key);
    log.info("hold cancelled: the job paid nothing", { job: jobId, msat: String(hold.amount) });
  }
}
