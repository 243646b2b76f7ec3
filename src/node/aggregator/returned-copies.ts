import type { AssignmentRecord, JobRecord } from "../../jobs/rows.ts";
import type { Verification } from "../../jobs/verify/verdict.ts";
import type { Store } from "../../store/db.ts";
import type { AggregatorPayments } from "./payments.ts";
import { settleShard } from "./settle.ts";
import type { AggregatorStore, CopyUsage } from "./store.ts";
import type { Trust } from "./trust.ts";

/**
 * Stores returned copies and settles their shards. Copies that return together are written in one
 * transaction (a write per copy would cap the aggregator at the disk's commit rate); `add` resolves
 * once its copy is stored. Until then the copy is only in memory, and a crash re-runs it.
 */
export interface ReturnedCopy {
  assignment: AssignmentRecord;
  job: JobRecord;
  /** The result with its canaries taken out (trust.ts). */
  bytes: Uint8Array;
  usage: CopyUsage;
  /** The canaries it carried and how many came back right. */
  canaries?: Verification["canaries"];
  /** A check it already passed (re-scoring), kept through settlement. */
  verification?: Verification;
}

export class ReturnedCopies {
  /** Canary counts of copies stored but not yet settled, for their verdicts. */
  private readonly canaries = new Map<string, Verification["canaries"]>();
  private readonly pending: { copy: ReturnedCopy; resolve: () => void; reject: (err: unknown) => void }[] = [];

  constructor(
    private readonly store: AggregatorStore,
    private readonly db: Store["db"],
    private readonly trust: Trust,
    /** Every shard of this job is verified now. */
    private readonly onVerified: (jobId: string) => void,
    /** The books, when this aggregator takes payment: a verified shard pays its copies. */
    private readonly payments?: AggregatorPayments,
  ) {}

  add(copy: ReturnedCopy): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.pending.push({ copy, resolve, reject });
    if (this.pending.length === 1) setTimeout(() => this.flush(), 0);
    return promise;
  }

  private flush(): void {
    const batch = this.pending.splice(0);
    const { store } = this;
    const verified = new Set<string>();
    let outcomes: unknown[];
    try {
      outcomes = this.db
        .transaction(() =>
          batch.map(({ copy }) => {
            try {
              // A savepoint each: one refused copy (its lease lost meanwhile) leaves the others stored.
              this.db.transaction(() => {
                store.recordCopy(copy.assignment.id, copy.bytes, copy.usage);
                if (copy.verification) store.jobs.setVerification(copy.assignment.id, copy.verification);
                if (copy.canaries) this.canaries.set(copy.assignment.id, copy.canaries);
                const settled = settleShard(
                  store.jobs,
                  copy.assignment.shardId,
                  this.trust.tolerance(copy.job),
                  (decision) => this.trust.judge(copy.job, decision),
                );
                this.trust.settled(copy.job, settled, this.canaries);
                if (settled.outcome === "verified") {
                  this.payments?.release(copy.job.id, settled.accepted);
                  for (const c of [...settled.accepted, ...settled.outvoted.map((o) => o.copy)])
                    this.canaries.delete(c.id);
                }
                if (settled.outcome === "verified" && store.jobs.jobState(copy.job.id).state === "verified") {
                  verified.add(copy.job.id);
                }
              })();
              return undefined;
            } catch (err) {
              return err;
            }
          }),
        )
        .immediate();
    } catch (err) {
      // The whole transaction failed (the database closed as the aggregator stopped, a full disk):
      // no copy of the batch is stored, each caller hears so, and a restart computes them again.
      for (const { reject } of batch) reject(err);
      return;
    }
    for (const [i, { resolve, reject }] of batch.entries()) {
      const err = outcomes[i];
      if (err === undefined) resolve();
      else reject(err);
    }
    for (const jobId of verified) this.onVerified(jobId);
  }
}
