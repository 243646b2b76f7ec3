import type { Store } from "../store/db.ts";
import { logger } from "../util/logger.ts";
import { JobReader } from "./job-reader.ts";
import type { AssignmentRecord, JobRecord, ShardRecord } from "./rows.ts";
import {
  type AssignmentState,
  assertAssignmentTransition,
  assertJobTransition,
  assertShardTransition,
  type CopyCounts,
  deriveShardState,
  type JobState,
  type ShardState,
  TERMINAL_JOB_STATES,
  TERMINAL_SHARD_STATES,
} from "./states.ts";

const log = logger("jobs");

/** A shard may lose or have rejected this many copies before the whole job fails. */
export const DEFAULT_MAX_SHARD_RETRIES = 10;

export interface JobStoreInit {
  /** The clock for every timestamp and lease deadline (tests move it by hand). */
  now?: () => number;
  maxShardRetries?: number;
  newId?: () => string;
}

const isReturnedish = (s: ShardState) => s === "returned" || s === "verified";

/**
 * The job store's machinery (see `JobStore` for the operations): transactions, moving one copy
 * through its states while keeping its shard's state, `missing` and the job's counters in step, and
 * failing a job. Every change is checked against the tables in `states.ts`.
 */
export abstract class JobBookkeeping extends JobReader {
  protected readonly maxShardRetries: number;
  protected readonly newId: () => string;

  constructor(store: Store, init: JobStoreInit = {}) {
    super(store, init.now);
    this.maxShardRetries = init.maxShardRetries ?? DEFAULT_MAX_SHARD_RETRIES;
    this.newId = init.newId ?? (() => crypto.randomUUID());
  }

  /** Gives up on a job: it and its unfinished shards are failed, leases in flight are revoked. */
  failJob(jobId: string, reason: string): JobRecord {
    return this.tx(() => {
      const job = this.job(jobId);
      assertJobTransition(jobId, job.state, "failed");
      const now = this.now();
      this.db
        .query(
          `UPDATE assignments SET state = 'failed', ended_at = ?, reason = ?
           WHERE job_id = ? AND state IN ('leased', 'running', 'disputed')`,
        )
        .run(now, `job failed: ${reason}`, jobId);
      this.db
        .query(
          `UPDATE shards SET state = 'failed', missing = 0, updated_at = ?
           WHERE job_id = ? AND state NOT IN ('verified', 'failed')`,
        )
        .run(now, jobId);
      this.db
        .query("UPDATE jobs SET state = 'failed', error = ?, updated_at = ?, finished_at = ? WHERE id = ?")
        .run(reason, now, now, jobId);
      log.warn("job failed", { job: jobId, reason });
      return this.job(jobId);
    });
  }

  protected tx<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.db.transaction(fn).immediate();
  }

  protected loseCopy(
    a: AssignmentRecord,
    to: "reassigned" | "failed" | "disputed",
    reason: string,
    countRetry = true,
  ): void {
    this.moveAssignment(a, to, { ended_at: this.now(), reason }, false);
    if (countRetry) this.db.query("UPDATE shards SET retries = retries + 1 WHERE id = ?").run(a.shardId);
    const shard = this.shard(a.shardId);
    if (shard.retries > this.maxShardRetries && !TERMINAL_JOB_STATES.includes(this.jobState(a.jobId).state)) {
      this.failJob(a.jobId, `shard ${shard.index} lost ${shard.retries} copies`);
      return;
    }
    this.refreshShard(a.shardId);
  }

  protected moveAssignment(
    a: AssignmentRecord,
    to: AssignmentState,
    fields: Record<string, string | number | Uint8Array | null>,
    refresh = true,
  ): void {
    assertAssignmentTransition(a.id, a.state, to);
    const names = Object.keys(fields);
    const sets = ["state = ?", ...names.map((n) => `${n} = ?`)].join(", ");
    this.db.query(`UPDATE assignments SET ${sets} WHERE id = ?`).run(to, ...Object.values(fields), a.id);
    if (refresh) this.refreshShard(a.shardId);
  }

  /** Brings a non-terminal shard's state and `missing` in line with its copies. */
  protected refreshShard(shardId: number): void {
    const shard = this.shard(shardId);
    if (TERMINAL_SHARD_STATES.includes(shard.state)) return;
    const counts: CopyCounts = { leased: 0, running: 0, returned: 0, verified: 0, lost: 0 };
    const rows = this.db
      .query<{ state: AssignmentState; n: number }, [number]>(
        "SELECT state, count(*) AS n FROM assignments WHERE shard_id = ? GROUP BY state",
      )
      .all(shardId);
    for (const { state, n } of rows) {
      if (state === "failed" || state === "reassigned" || state === "disputed") counts.lost += n;
      else counts[state] += n;
    }
    const redundancy = this.targetCopies(shardId);
    const live = counts.leased + counts.running + counts.returned + counts.verified;
    this.db.query("UPDATE shards SET missing = ? WHERE id = ?").run(Math.max(0, redundancy - live), shardId);
    this.setShardState(shard, deriveShardState(counts, redundancy));
  }

  protected setShardState(shard: ShardRecord, to: ShardState): void {
    const now = this.now();
    if (to !== shard.state) {
      assertShardTransition(String(shard.id), shard.state, to);
      const terminal = TERMINAL_SHARD_STATES.includes(to);
      this.db
        .query(`UPDATE shards SET state = ?, updated_at = ?${terminal ? ", missing = 0" : ""} WHERE id = ?`)
        .run(to, now, shard.id);
      const returned = Number(isReturnedish(to)) - Number(isReturnedish(shard.state));
      const verified = Number(to === "verified") - Number(shard.state === "verified");
      if (returned !== 0 || verified !== 0) {
        this.db
          .query(
            "UPDATE jobs SET shards_returned = shards_returned + ?, shards_verified = shards_verified + ? WHERE id = ?",
          )
          .run(returned, verified, shard.jobId);
      }
    }
    this.refreshJob(shard.jobId, now);
  }

  private refreshJob(jobId: string, now: number): void {
    const job = this.jobState(jobId);
    if (TERMINAL_JOB_STATES.includes(job.state)) return;
    let to: JobState = "running";
    if (job.shardsVerified === job.shardCount) to = "verified";
    else if (job.shardsReturned === job.shardCount) to = "returned";
    if (to === job.state) return;
    assertJobTransition(jobId, job.state, to);
    this.db
      .query("UPDATE jobs SET state = ?, updated_at = ?, finished_at = ? WHERE id = ?")
      .run(to, now, to === "verified" ? now : null, jobId);
    if (to === "verified") log.info("job verified", { job: jobId });
  }
}
