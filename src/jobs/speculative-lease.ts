import type { Store } from "../store/db.ts";
import { IllegalTransitionError, LeaseRefusedError } from "./errors.ts";
import type { JobReader } from "./job-reader.ts";
import type { AssignmentRecord } from "./rows.ts";
import { MAX_SPECULATIVE_COPIES } from "./scheduler.ts";
import { IN_FLIGHT_ASSIGNMENT_STATES, LIVE_ASSIGNMENT_STATES } from "./states.ts";

/**
 * Leases an extra copy of a shard beyond its redundancy (a `speculative` lease of the planner), which
 * `JobStore.lease` refuses because the shard already has all its copies.
 *
 * It only adds a leased assignment, which leaves the shard's derived state and `missing` as they were:
 * the shard is `leased` or `running` because a copy is in flight, and `missing` stays 0. The first
 * `redundancy` copies back make it `returned`; `verifyShard` then fails whichever copy is still in
 * flight, and a late result for it is refused as for any lost lease, so nothing counts twice.
 */
export function leaseSpeculative(
  store: Store,
  reader: JobReader,
  shardId: number,
  provider: string,
  leaseMs: number,
  now: number,
  id: string = crypto.randomUUID(),
): AssignmentRecord {
  return store.db
    .transaction(() => {
      const shard = reader.shard(shardId);
      const job = reader.job(shard.jobId);
      if (shard.state !== "leased" && shard.state !== "running") {
        throw new IllegalTransitionError(
          `shard ${shardId} is ${shard.state}: only a shard in flight gets an extra copy`,
        );
      }
      const copies = reader.assignments(shardId).filter((a) => LIVE_ASSIGNMENT_STATES.includes(a.state));
      if (!copies.some((a) => IN_FLIGHT_ASSIGNMENT_STATES.includes(a.state))) {
        throw new LeaseRefusedError(`shard ${shardId} has no copy in flight to duplicate`);
      }
      if (copies.length >= job.spec.redundancy + MAX_SPECULATIVE_COPIES) {
        throw new LeaseRefusedError(`shard ${shardId} already has ${copies.length} copies`);
      }
      if (copies.some((a) => a.provider === provider) || reader.rejectedBefore(shardId, provider)) {
        throw new LeaseRefusedError(`provider ${provider} already holds a copy of shard ${shardId}`);
      }
      store.db
        .query(
          `INSERT INTO assignments (id, shard_id, job_id, provider, state, leased_at, lease_deadline)
         VALUES (?, ?, ?, ?, 'leased', ?, ?)`,
        )
        .run(id, shardId, shard.jobId, provider, now, now + leaseMs);
      return reader.assignment(id);
    })
    .immediate();
}
