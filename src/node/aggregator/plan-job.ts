import { type PlanCopy, PriceTooLowError } from "../../jobs/feasibility.ts";
import { tokensPerRecord } from "../../jobs/job-snapshot.ts";
import type { JobRecord } from "../../jobs/rows.ts";
import type { PlanJob, PlanShard } from "../../jobs/scheduler.ts";
import type { Store } from "../../store/db.ts";
import type { AggregatorStore } from "./store.ts";

/**
 * A stored job as the planner sees it (as `snapshotJob` gives it, from two indexed queries instead of
 * a full report, since it runs on every tick), with the aggregator's fee taken out of the client's
 * maximum price first: providers may ask for at most `maxPriceMsat / (1 + fee)` between them.
 */
/** Returned copies of finished shards read for measured speeds (the planner keeps 32 per provider). */
export const HISTORY_COPIES = 256;

export function planJob(store: AggregatorStore, db: Store["db"], job: JobRecord): PlanJob {
  // Only unfinished shards: a tick's cost follows the work left, not the job's size.
  const shardRows = db
    .query<{ id: number; idx: number; record_count: number; state: string }, [string]>(
      "SELECT id, idx, record_count, state FROM shards WHERE job_id = ? AND state NOT IN ('verified', 'failed') ORDER BY idx",
    )
    .all(job.id);
  const copyRows = db
    .query<
      {
        shard_id: number;
        provider: string;
        state: PlanCopy["state"];
        leased_at: number;
        started_at: number | null;
        returned_at: number | null;
      },
      [string]
    >(
      `SELECT a.shard_id, a.provider, a.state, a.leased_at, a.started_at, a.returned_at
       FROM assignments a JOIN shards s ON s.id = a.shard_id
       WHERE a.job_id = ? AND a.state IN ('leased', 'running', 'returned') AND s.state NOT IN ('verified', 'failed')
       ORDER BY a.rowid`,
    )
    .all(job.id);
  // Providers whose copy of an unfinished shard was rejected or disputed: they may not compute it again.
  const rejectedRows = db
    .query<{ shard_id: number; provider: string }, [string]>(
      `SELECT DISTINCT a.shard_id, a.provider FROM assignments a JOIN shards s ON s.id = a.shard_id
       WHERE a.job_id = ? AND a.state IN ('failed', 'disputed') AND s.state NOT IN ('verified', 'failed')`,
    )
    .all(job.id);
  const rejected = new Map<number, string[]>();
  for (const r of rejectedRows) rejected.set(r.shard_id, [...(rejected.get(r.shard_id) ?? []), r.provider]);
  // The latest returned copies of finished shards, for the providers' measured speeds.
  const historyRows = db
    .query<
      { provider: string; leased_at: number; started_at: number | null; returned_at: number; record_count: number },
      [string, number]
    >(
      `SELECT a.provider, a.leased_at, a.started_at, a.returned_at, s.record_count
       FROM assignments a JOIN shards s ON s.id = a.shard_id
       WHERE a.job_id = ? AND a.state = 'verified' ORDER BY a.rowid DESC LIMIT ?`,
    )
    .all(job.id, HISTORY_COPIES);
  const copies = new Map<number, PlanCopy[]>();
  for (const r of copyRows) {
    const list = copies.get(r.shard_id) ?? [];
    list.push({
      provider: r.provider,
      state: r.state,
      leasedAt: r.leased_at,
      ...(r.started_at !== null && { startedAt: r.started_at }),
      ...(r.returned_at !== null && { returnedAt: r.returned_at }),
    });
    copies.set(r.shard_id, list);
  }
  const { redundancy } = job.spec;
  const shards: PlanShard[] = shardRows.map((s) => {
    const live = copies.get(s.id) ?? [];
    const done = s.state === "verified" || s.state === "failed";
    return {
      id: s.id,
      index: s.idx,
      count: s.record_count,
      done,
      missing: done ? 0 : Math.max(0, redundancy - live.length),
      copies: live,
      ...(rejected.has(s.id) ? { excluded: rejected.get(s.id) } : {}),
    };
  });
  const perRecord = tokensPerRecord(job.spec);
  const history = historyRows.map((r) => ({
    copy: {
      provider: r.provider,
      state: "verified" as const,
      leasedAt: r.leased_at,
      ...(r.started_at !== null && { startedAt: r.started_at }),
      returnedAt: r.returned_at,
    },
    work: { count: r.record_count, tokensPerRecord: perRecord },
  }));
  const meta = store.meta(job.id);
  return {
    id: job.id,
    sha256: job.spec.model.sha256,
    redundancy,
    maxPriceMsat: providerBudget(job.spec.maxPriceMsat, meta.feePercent),
    deadlineMs: job.spec.deadlineMs,
    totalTokens: meta.records * perRecord,
    tokensPerRecord: perRecord,
    shards,
    shardCount: job.shardCount,
    history,
  };
}

/** What the providers may be paid out of a client's budget once the fee is set aside. */
export function providerBudget(maxPriceMsat: number, feePercent: number): number {
  return Math.floor(maxPriceMsat / (1 + feePercent / 100));
}

/** The least a client must offer so that `providerBudget` leaves `providersMsat` for the providers. */
export function clientPrice(providersMsat: number, feePercent: number): number {
  let price = Math.ceil(providersMsat * (1 + feePercent / 100));
  while (providerBudget(price, feePercent) < providersMsat) price++;
  return price;
}

/**
 * A refusal in the client's terms: the planner speaks of the providers' share of the budget, the
 * client offered a price that includes the aggregator's fee.
 */
export function clientRefusal(error: Error, maxPriceMsat: number, feePercent: number): Error {
  if (!(error instanceof PriceTooLowError)) return error;
  const needed = clientPrice(error.neededMsat, feePercent);
  return new PriceTooLowError(
    `max price ${maxPriceMsat} msat is below what the providers ask plus the ${feePercent}% fee: ${needed} msat`,
    needed,
    { hint: `raise the maximum price to at least ${needed} msat` },
  );
}
