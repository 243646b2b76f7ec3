import { snapshotJob } from "../../jobs/job-snapshot.ts";
import type { JobRecord } from "../../jobs/rows.ts";
import type { PlanJob } from "../../jobs/scheduler.ts";
import type { AggregatorStore } from "./store.ts";

/**
 * A stored job as the planner sees it, with the aggregator's fee taken out of the client's maximum
 * price first: providers may ask for at most `maxPriceMsat / (1 + fee)` between them.
 */
export function planJob(store: AggregatorStore, job: JobRecord): PlanJob {
  const snapshot = snapshotJob(store.jobs, job.id);
  return { ...snapshot, maxPriceMsat: providerBudget(job.spec.maxPriceMsat, store.meta(job.id).feePercent) };
}

/** What the providers may be paid out of a client's budget once the fee is set aside. */
export function providerBudget(maxPriceMsat: number, feePercent: number): number {
  return Math.floor(maxPriceMsat / (1 + feePercent / 100));
}
