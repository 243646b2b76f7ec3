import type { AssignmentRecord } from "../../jobs/rows.ts";
import type { JobSpec } from "../../jobs/spec.ts";
import { type Msat, msat, ZERO_MSAT } from "../../payments/amount.ts";
import { earningsBps } from "../../payments/earnings.ts";
import { Escrow, type PaidCopy } from "../../payments/escrow.ts";
import { Ledger, LedgerInvariantError } from "../../payments/ledger.ts";
import { ReputationStore } from "../../reputation/store.ts";
import type { Store } from "../../store/db.ts";
import { logger } from "../../util/logger.ts";
import type { AggregatorStore } from "./store.ts";

/**
 * Where the aggregator's job life meets its books (payments/escrow.ts): the quote locked in the
 * transaction that creates the job, each verified copy paid in the transaction that verifies its
 * shard, a convicted provider's releases clawed back and its bond and earnings forfeited in the
 * transaction that convicts it, and every ended job's escrow refunded (on every tick, so a crash
 * between a job's end and its refund only delays the refund). Nothing here runs outside a SQLite
 * transaction that also changes the job, so money and job state never disagree.
 */
const log = logger("aggregator:payments");

export class AggregatorPayments {
  readonly ledger: Ledger;
  readonly escrow: Escrow;

  private readonly reputation: ReputationStore;

  constructor(
    private readonly db: Store,
    private readonly store: AggregatorStore,
    now: () => number = Date.now,
    /** A provider gets copies only while its bond here is at least this. */
    readonly minBondMsat: Msat = ZERO_MSAT,
  ) {
    this.ledger = new Ledger(db, now);
    this.escrow = new Escrow(this.ledger);
    this.reputation = new ReputationStore(db, now);
  }

  /** Of `providers`, those whose bond here is below `minBondMsat` (they get no copies). */
  unbonded(providers: readonly string[]): string[] {
    if (this.minBondMsat === ZERO_MSAT) return [];
    return providers.filter((p) => this.escrow.bond(p) < this.minBondMsat);
  }

  /** What a job locks: the client's maximum price, which the planner keeps every copy it pays within. */
  quote(spec: JobSpec): Msat {
    return msat(spec.maxPriceMsat, "maxPriceMsat");
  }

  /** Before an upload: InsufficientFundsError when the client's credit cannot cover the quote. */
  checkCredit(client: string, spec: JobSpec): void {
    this.escrow.checkCredit(client, this.quote(spec));
  }

  /** In the job's creating transaction. */
  lock(jobId: string, client: string, spec: JobSpec): void {
    const amount = this.quote(spec);
    this.escrow.lock(jobId, client, amount);
    this.db.db.query("UPDATE aggregator_jobs SET escrow_msat = ? WHERE job_id = ?").run(amount, jobId);
  }

  /**
   * In the transaction that verified the shard: pays its accepted copies, each its price times its
   * earnings multipliers for speed and reputation (payments/earnings.ts), recorded with the copy.
   */
  release(jobId: string, accepted: readonly AssignmentRecord[]): void {
    const meta = this.store.meta(jobId);
    const sha256 = this.store.jobs.job(jobId).spec.model.sha256;
    const wall = (a: AssignmentRecord) => (a.returnedAt ?? a.endedAt ?? a.leasedAt) - a.leasedAt;
    const fastestWallMs = Math.min(...accepted.map(wall));
    const copies: PaidCopy[] = accepted.map((a) => {
      const score = this.reputation.score(a.provider, sha256);
      this.store.setEarnings(a.id, earningsBps({ wallMs: wall(a), fastestWallMs, score }));
      return { assignmentId: a.id, provider: a.provider, shardId: a.shardId, amount: this.store.copyPrice(a.id) };
    });
    this.escrow.release(jobId, copies, meta.feePercent);
  }

  /**
   * In the transaction that convicted `provider`: what it was released for copies of jobs still
   * running goes back to their escrow, then its bond and remaining earnings are forfeited.
   */
  convicted(provider: string, penaltyId: number, jobId: string): Msat {
    const running = this.db.db
      .query<{ id: string; job_id: string }, [string]>(
        `SELECT a.id, a.job_id FROM assignments a JOIN jobs j ON j.id = a.job_id
         WHERE a.provider = ? AND j.state NOT IN ('verified', 'failed')`,
      )
      .all(provider);
    for (const a of running) this.escrow.clawBack(a.job_id, a.id);
    const forfeited = this.escrow.forfeit(provider, penaltyId, jobId);
    if (forfeited > 0n) log.warn("bond and earnings forfeited", { provider, msat: forfeited.toString() });
    return forfeited;
  }

  /** Refunds what is left in the escrow of every job that ended; returns how many were refunded. */
  refundEnded(): number {
    const ended = this.db.db
      .query<{ id: string; state: string; client: string }, []>(
        `SELECT j.id, j.state, m.client_peer AS client FROM ledger_accounts l
         JOIN jobs j ON j.id = l.owner JOIN aggregator_jobs m ON m.job_id = j.id
         WHERE l.kind = 'escrow' AND l.balance_msat > 0 AND j.state IN ('verified', 'failed')`,
      )
      .all();
    for (const j of ended) {
      this.db.db.transaction(() => this.escrow.refund(j.id, j.client, `job ${j.state}`)).immediate();
    }
    return ended.length;
  }

  /**
   * What each provider may be paid out now: its earnings, less what it was released for copies of
   * jobs still running (a conviction before they end claws those back into their escrow).
   */
  payable(): Map<string, Msat> {
    const rows = this.db.db
      .query<{ provider: string; balance: bigint; held: bigint | null }, []>(
        `SELECT a.owner AS provider, a.balance_msat AS balance,
           (SELECT sum(e.delta_msat) FROM ledger_entries e JOIN ledger_txns t ON t.id = e.txn_id JOIN jobs j ON j.id = t.job_id
            WHERE e.account = a.id AND t.reason = 'release' AND j.state NOT IN ('verified', 'failed')
              AND NOT EXISTS (SELECT 1 FROM ledger_txns c WHERE c.idem = 'clawback:' || t.assignment_id)) AS held
         FROM ledger_accounts a WHERE a.kind = 'earnings' AND a.balance_msat > 0`,
      )
      .safeIntegers(true)
      .all();
    const out = new Map<string, Msat>();
    for (const r of rows) {
      const free = r.balance - (r.held ?? 0n);
      if (free > 0n) out.set(r.provider, msat(free));
    }
    return out;
  }

  /**
   * The books (ledger.ts's invariants; an escrow never below zero means no job pays out more than
   * it locked) and what the aggregator promised on top: every copy paid is verified, or was failed
   * afterwards and clawed back.
   */
  check(): void {
    this.ledger.check();
    const unearned = this.db.db
      .query<{ id: string; state: string }, []>(
        `SELECT a.id, a.state FROM ledger_txns t JOIN assignments a ON a.id = t.assignment_id
         WHERE t.reason = 'release' AND a.state != 'verified'
           AND NOT EXISTS (SELECT 1 FROM ledger_txns c WHERE c.idem = 'clawback:' || a.id)
         LIMIT 1`,
      )
      .get();
    if (unearned) throw new LedgerInvariantError(`copy ${unearned.id} was paid but is ${unearned.state}`);
  }
}
