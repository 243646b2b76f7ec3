import type { Store } from "../store/db.ts";
import { JobNotFoundError } from "./errors.ts";
import { type JobProgress, type JobReport, jobProgress, jobReport } from "./job-report.ts";
import {
  ASSIGNMENT_COLUMNS,
  type AssignmentRecord,
  type AssignmentRow,
  JOB_COLUMNS,
  type JobRecord,
  type JobRow,
  SHARD_COLUMNS,
  type ShardRecord,
  type ShardRow,
  type StoredResult,
  toAssignment,
  toJob,
  toShard,
} from "./rows.ts";
import type { JobState } from "./states.ts";

/** Read-only queries over jobs, shards and assignments; `JobStore` adds the state changes. */
export class JobReader {
  protected readonly db: Store["db"];
  protected readonly now: () => number;

  constructor(store: Store, now: () => number = Date.now) {
    this.db = store.db;
    this.now = now;
  }

  job(id: string): JobRecord {
    const row = this.jobRow("id", id);
    if (!row) throw new JobNotFoundError(`no job ${id}`);
    return toJob(row);
  }

  jobByKey(idempotencyKey: string): JobRecord | undefined {
    const row = this.jobRow("idempotency_key", idempotencyKey);
    return row ? toJob(row) : undefined;
  }

  shard(id: number): ShardRecord {
    const row = this.db.query<ShardRow, [number]>(`SELECT ${SHARD_COLUMNS} FROM shards WHERE id = ?`).get(id);
    if (!row) throw new JobNotFoundError(`no shard ${id}`);
    return toShard(row);
  }

  /** A job's shards in input order. */
  shards(jobId: string): ShardRecord[] {
    return this.db
      .query<ShardRow, [string]>(`SELECT ${SHARD_COLUMNS} FROM shards WHERE job_id = ? ORDER BY idx`)
      .all(jobId)
      .map(toShard);
  }

  assignment(id: string): AssignmentRecord {
    const row = this.db
      .query<AssignmentRow, [string]>(`SELECT ${ASSIGNMENT_COLUMNS} FROM assignments WHERE id = ?`)
      .get(id);
    if (!row) throw new JobNotFoundError(`no assignment ${id}`);
    return toAssignment(row);
  }

  /** Every copy ever leased for a shard, oldest first. */
  assignments(shardId: number): AssignmentRecord[] {
    return this.db
      .query<AssignmentRow, [number]>(`SELECT ${ASSIGNMENT_COLUMNS} FROM assignments WHERE shard_id = ? ORDER BY rowid`)
      .all(shardId)
      .map(toAssignment);
  }

  /** Copies leased or running for a job: what a restarted aggregator finds in flight. */
  inFlight(jobId: string): AssignmentRecord[] {
    return this.db
      .query<AssignmentRow, [string]>(
        `SELECT ${ASSIGNMENT_COLUMNS} FROM assignments WHERE job_id = ? AND state IN ('leased', 'running') ORDER BY rowid`,
      )
      .all(jobId)
      .map(toAssignment);
  }

  /**
   * Shards of a job that still need copies and that `provider` holds none of (and had none
   * rejected), in input order.
   * Cost grows with the shards this provider holds that still wait for other copies (its window).
   */
  leasableShards(jobId: string, provider: string, limit: number): ShardRecord[] {
    return this.db
      .query<ShardRow, [string, string, number]>(
        `SELECT ${SHARD_COLUMNS} FROM shards s WHERE job_id = ? AND missing > 0
           AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.shard_id = s.id AND a.provider = ?
                             AND a.state IN ('leased', 'running', 'returned', 'verified', 'failed', 'disputed'))
         ORDER BY idx LIMIT ?`,
      )
      .all(jobId, provider, limit)
      .map(toShard);
  }

  /** A stored result: its bytes when kept in the database, otherwise its path. */
  result(assignmentId: string): StoredResult | undefined {
    const row = this.db
      .query<{ result_sha256: string | null; result_bytes: Uint8Array | null; result_path: string | null }, [string]>(
        "SELECT result_sha256, result_bytes, result_path FROM assignments WHERE id = ?",
      )
      .get(assignmentId);
    if (!row?.result_sha256) return undefined;
    if (row.result_bytes) return { sha256: row.result_sha256, bytes: row.result_bytes };
    return row.result_path ? { sha256: row.result_sha256, path: row.result_path } : undefined;
  }

  /** Jobs not yet verified or failed, oldest first: what a restarted aggregator resumes. */
  unfinishedJobs(): JobRecord[] {
    return this.db
      .query<JobRow, []>(
        `SELECT ${JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'running', 'returned') ORDER BY created_at, rowid`,
      )
      .all()
      .map(toJob);
  }

  /** Unfinished jobs whose deadline is at or before `now`: the scheduler fails them. */
  overdueJobs(now: number): JobRecord[] {
    return this.db
      .query<JobRow, [number]>(
        `SELECT ${JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'running', 'returned') AND deadline_ms <= ?
         ORDER BY deadline_ms, rowid`,
      )
      .all(now)
      .map(toJob);
  }

  /** Counts of shards and copies per state. */
  progress(jobId: string): JobProgress {
    return jobProgress(this.db, this.job(jobId));
  }

  /** Shards, providers, timings and retries of a job, for the client and the later issues. */
  report(jobId: string): JobReport {
    const job = this.job(jobId);
    const assignments = this.db
      .query<AssignmentRow, [string]>(`SELECT ${ASSIGNMENT_COLUMNS} FROM assignments WHERE job_id = ? ORDER BY rowid`)
      .all(jobId)
      .map(toAssignment);
    return jobReport(job, this.shards(jobId), assignments, this.now());
  }

  /** Copies a shard needs: its adaptive target when set, else its job's redundancy. */
  targetCopies(shardId: number): number {
    const row = this.db
      .query<{ n: number }, [number]>(
        "SELECT coalesce(s.target_copies, j.redundancy) AS n FROM shards s JOIN jobs j ON j.id = s.job_id WHERE s.id = ?",
      )
      .get(shardId);
    return row?.n ?? 1;
  }

  protected redundancy(jobId: string): number {
    const row = this.db.query<{ redundancy: number }, [string]>("SELECT redundancy FROM jobs WHERE id = ?").get(jobId);
    return row?.redundancy ?? 1;
  }

  /** A job's state and shard counters without parsing its spec (asked on every state change). */
  jobState(jobId: string): Pick<JobRecord, "state" | "shardCount" | "shardsReturned" | "shardsVerified"> {
    const row = this.db
      .query<{ state: JobState; shard_count: number; shards_returned: number; shards_verified: number }, [string]>(
        "SELECT state, shard_count, shards_returned, shards_verified FROM jobs WHERE id = ?",
      )
      .get(jobId);
    if (!row) throw new JobNotFoundError(`no job ${jobId}`);
    return {
      state: row.state,
      shardCount: row.shard_count,
      shardsReturned: row.shards_returned,
      shardsVerified: row.shards_verified,
    };
  }

  /**
   * Whether the provider's copy of this shard was rejected or disputed: it may not compute the shard
   * again, or it could outvote an honest provider with a second copy of its own wrong result.
   */
  rejectedBefore(shardId: number, provider: string): boolean {
    return (
      this.db
        .query<{ n: number }, [number, string]>(
          "SELECT count(*) AS n FROM assignments WHERE shard_id = ? AND provider = ? AND state IN ('failed', 'disputed')",
        )
        .get(shardId, provider)?.n !== 0
    );
  }

  protected jobRow(column: "id" | "idempotency_key", value: string): JobRow | null {
    return this.db.query<JobRow, [string]>(`SELECT ${JOB_COLUMNS} FROM jobs WHERE ${column} = ?`).get(value);
  }
}
