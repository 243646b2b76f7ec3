import type { Store } from "../store/db.ts";
import { logger } from "../util/logger.ts";
import {
  IdempotencyConflictError,
  IllegalTransitionError,
  LeaseLostError,
  LeaseRefusedError,
  ResultConflictError,
} from "./errors.ts";
import { JobReader } from "./job-reader.ts";
import {
  ASSIGNMENT_COLUMNS,
  type AssignmentRecord,
  type AssignmentRow,
  canonicalJson,
  checkResult,
  insertJob,
  type JobRecord,
  type RecordedResult,
  type ResultOutcome,
  type ShardRecord,
  type StoredResult,
  toAssignment,
  toJob,
} from "./rows.ts";
import { checkShardRanges, parseJobSpec, type ShardRange } from "./spec.ts";
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
 * Jobs, their shards and the leases on them, in SQLite. Every method that changes state runs as
 * one immediate transaction that checks each change against the tables in `states.ts`, so a crash
 * at any point leaves either all of a change or none of it. An aggregator's loop:
 *
 * ```ts
 * const { job } = jobs.submit(spec, plans);                     // again after a retry: same job
 * for (const a of jobs.leaseMany(job.id, peer, window, leaseMs)) send(a);
 * jobs.recordResults(replies);                                  // duplicates count once
 * jobs.expireLeases(Date.now());                                // lost copies go back to the pool
 * jobs.verifyShard(shardId, sha256);                            // when its copies agree
 * for (const j of jobs.unfinishedJobs()) resume(j);             // after a restart
 * ```
 */
export class JobStore extends JobReader {
  private readonly maxShardRetries: number;
  private readonly newId: () => string;

  constructor(store: Store, init: JobStoreInit = {}) {
    super(store, init.now);
    this.maxShardRetries = init.maxShardRetries ?? DEFAULT_MAX_SHARD_RETRIES;
    this.newId = init.newId ?? (() => crypto.randomUUID());
  }

  /**
   * Records a job and its shards, all queued. Submitting the same idempotency key again returns
   * the job it created (`created: false`); the same key with a different spec is refused.
   */
  submit(specInput: unknown, shards: readonly ShardRange[]): { job: JobRecord; created: boolean } {
    const spec = parseJobSpec(specInput);
    checkShardRanges(shards);
    const specJson = canonicalJson(spec);
    return this.tx(() => {
      const existing = this.jobRow("idempotency_key", spec.idempotencyKey);
      if (existing) {
        if (canonicalJson(JSON.parse(existing.spec_json)) !== specJson || existing.shard_count !== shards.length) {
          throw new IdempotencyConflictError(`job key ${spec.idempotencyKey} was already used for another job`, {
            hint: "choose a new idempotency key for a different job",
          });
        }
        return { job: toJob(existing), created: false };
      }
      const id = this.newId();
      const now = this.now();
      insertJob(this.db, id, spec, specJson, shards, now);
      log.info("job submitted", { job: id, shards: shards.length, redundancy: spec.redundancy });
      return { job: this.job(id), created: true };
    });
  }

  /**
   * Leases one copy of a shard to a provider until `now + leaseMs`. Refused with
   * `LeaseRefusedError` when the shard has all its copies or the provider already holds one.
   */
  lease(shardId: number, provider: string, leaseMs: number): AssignmentRecord {
    return this.tx(() => {
      const shard = this.shard(shardId);
      const job = this.jobState(shard.jobId);
      if (TERMINAL_JOB_STATES.includes(job.state) || TERMINAL_SHARD_STATES.includes(shard.state)) {
        throw new IllegalTransitionError(`shard ${shardId} of ${job.state} job ${shard.jobId} is ${shard.state}`);
      }
      if (shard.missing <= 0) throw new LeaseRefusedError(`shard ${shardId} already has all its copies`);
      if (this.rejectedBefore(shardId, provider)) {
        throw new LeaseRefusedError(`provider ${provider} had a copy of shard ${shardId} rejected`);
      }
      const id = this.newId();
      const now = this.now();
      try {
        this.db
          .query(
            `INSERT INTO assignments (id, shard_id, job_id, provider, state, leased_at, lease_deadline)
             VALUES (?, ?, ?, ?, 'leased', ?, ?)`,
          )
          .run(id, shardId, shard.jobId, provider, now, now + leaseMs);
      } catch (cause) {
        if (String(cause).includes("UNIQUE")) {
          throw new LeaseRefusedError(`provider ${provider} already holds a copy of shard ${shardId}`, { cause });
        }
        throw cause;
      }
      this.refreshShard(shardId);
      return this.assignment(id);
    });
  }

  /** Leases the first shard of a job that `provider` may take, or returns undefined when none. */
  leaseNext(jobId: string, provider: string, leaseMs: number): AssignmentRecord | undefined {
    return this.tx(() => {
      const shard = this.leasableShards(jobId, provider, 1)[0];
      return shard ? this.lease(shard.id, provider, leaseMs) : undefined;
    });
  }

  /**
   * Leases up to `count` shards of a job to one provider in one transaction (its in-flight
   * window), in input order; fewer, or none, when fewer shards need a copy it may take.
   */
  leaseMany(jobId: string, provider: string, count: number, leaseMs: number): AssignmentRecord[] {
    return this.tx(() => this.leasableShards(jobId, provider, count).map((s) => this.lease(s.id, provider, leaseMs)));
  }

  /** The provider has begun computing the copy. */
  start(assignmentId: string): AssignmentRecord {
    return this.tx(() => {
      this.moveAssignment(this.assignment(assignmentId), "running", { started_at: this.now() });
      return this.assignment(assignmentId);
    });
  }

  /** Extends an in-flight lease to `now + leaseMs` (a long shard streaming partial results). */
  renew(assignmentId: string, leaseMs: number): AssignmentRecord {
    return this.tx(() => {
      const a = this.assignment(assignmentId);
      if (a.state !== "leased" && a.state !== "running") {
        throw new LeaseLostError(`assignment ${assignmentId} is ${a.state}, its lease cannot be renewed`);
      }
      this.db.query("UPDATE assignments SET lease_deadline = ? WHERE id = ?").run(this.now() + leaseMs, assignmentId);
      return this.assignment(assignmentId);
    });
  }

  /**
   * Stores a copy's result with its provenance (the assignment's provider). The same result
   * recorded twice counts once (`duplicate: true`); a different one for the same assignment is a
   * `ResultConflictError`, and one for a lease already lost is a `LeaseLostError`.
   */
  recordResult(assignmentId: string, result: StoredResult): RecordedResult {
    checkResult(result);
    return this.tx(() => {
      const a = this.assignment(assignmentId);
      if (a.state === "returned" || a.state === "verified") {
        if (a.resultSha256 === result.sha256) return { assignment: a, duplicate: true };
        throw new ResultConflictError(`assignment ${assignmentId} already returned a different result`);
      }
      if (a.state === "reassigned" || a.state === "failed") {
        throw new LeaseLostError(`assignment ${assignmentId} is ${a.state}: ${a.reason ?? "lease lost"}`);
      }
      this.moveAssignment(a, "returned", {
        returned_at: this.now(),
        result_sha256: result.sha256,
        result_bytes: "bytes" in result ? result.bytes : null,
        result_path: "path" in result ? result.path : null,
      });
      return { assignment: this.assignment(assignmentId), duplicate: false };
    });
  }

  /**
   * Records many results in one transaction, each as `recordResult` would; one refused result
   * (its error in the outcome) does not undo the others.
   */
  recordResults(results: readonly { assignmentId: string; result: StoredResult }[]): ResultOutcome[] {
    return this.tx(() =>
      results.map(({ assignmentId, result }) => {
        try {
          // A nested transaction is a savepoint: a refused result leaves nothing behind.
          return this.db.transaction(() => this.recordResult(assignmentId, result))();
        } catch (error) {
          return { assignmentId, error: error as Error };
        }
      }),
    );
  }

  /**
   * The provider is gone or gave up: its copy goes back so another provider can take the shard.
   * `countRetry: false` for a copy that never ran (the provider was busy, the aggregator restarted),
   * which does not bring the shard closer to `maxShardRetries`.
   */
  release(assignmentId: string, reason: string, options: { countRetry?: boolean } = {}): AssignmentRecord {
    return this.tx(() => {
      this.loseCopy(this.assignment(assignmentId), "reassigned", reason, options.countRetry ?? true);
      return this.assignment(assignmentId);
    });
  }

  /** The copy's result is malformed or wrong: it is failed and the shard needs another copy. */
  reject(assignmentId: string, reason: string): AssignmentRecord {
    return this.tx(() => {
      this.loseCopy(this.assignment(assignmentId), "failed", reason);
      return this.assignment(assignmentId);
    });
  }

  /** A returned copy disagrees with the others: it keeps its result, and the shard gets a tie-breaking copy. */
  dispute(assignmentId: string, reason: string): AssignmentRecord {
    return this.tx(() => {
      this.loseCopy(this.assignment(assignmentId), "disputed", reason);
      return this.assignment(assignmentId);
    });
  }

  /**
   * Moves every lease whose deadline is at or before `now` to `reassigned` (reason "lease expired")
   * so its shard can be leased again; returns the expired assignments.
   */
  expireLeases(now: number = this.now()): AssignmentRecord[] {
    // Asked every tick: a read first, so no write transaction is opened when nothing expired.
    const any = this.db
      .query<{ one: number }, [number]>(
        "SELECT 1 AS one FROM assignments WHERE state IN ('leased', 'running') AND lease_deadline <= ? LIMIT 1",
      )
      .get(now);
    if (!any) return [];
    return this.tx(() => {
      const expired = this.db
        .query<AssignmentRow, [number]>(
          `SELECT ${ASSIGNMENT_COLUMNS} FROM assignments
           WHERE state IN ('leased', 'running') AND lease_deadline <= ? ORDER BY lease_deadline`,
        )
        .all(now)
        .map(toAssignment);
      for (const stale of expired) {
        // An earlier expiry in this loop may have failed the whole job and with it this lease.
        const a = this.assignment(stale.id);
        if (a.state === "leased" || a.state === "running") this.loseCopy(a, "reassigned", "lease expired");
      }
      if (expired.length > 0) log.info("leases expired", { count: expired.length });
      return expired.map((a) => this.assignment(a.id));
    });
  }

  /**
   * Accepts `sha256` as a returned shard's result: copies that returned it (disputed ones included)
   * become verified, copies that returned something else and copies still in flight are failed.
   */
  verifyShard(shardId: number, sha256: string): ShardRecord {
    return this.tx(() => {
      const shard = this.shard(shardId);
      assertShardTransition(String(shardId), shard.state, "verified");
      const copies = this.assignments(shardId);
      if (!copies.some((a) => (a.state === "returned" || a.state === "disputed") && a.resultSha256 === sha256)) {
        throw new ResultConflictError(`no copy of shard ${shardId} returned ${sha256}`);
      }
      const now = this.now();
      for (const a of copies) {
        const held = a.state === "returned" || a.state === "disputed";
        if (held && a.resultSha256 === sha256) this.moveAssignment(a, "verified", { ended_at: now }, false);
        else if (held) this.moveAssignment(a, "failed", { ended_at: now, reason: "result rejected" }, false);
        else if (a.state === "leased" || a.state === "running") {
          this.moveAssignment(a, "failed", { ended_at: now, reason: "shard already verified" }, false);
        }
      }
      this.db.query("UPDATE shards SET result_sha256 = ? WHERE id = ?").run(sha256, shardId);
      this.setShardState(shard, "verified");
      return this.shard(shardId);
    });
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

  private tx<T>(fn: () => T): T {
    if (this.db.inTransaction) return fn();
    return this.db.transaction(fn).immediate();
  }

  private loseCopy(
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

  private moveAssignment(
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
  private refreshShard(shardId: number): void {
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
    const redundancy = this.redundancy(shard.jobId);
    const live = counts.leased + counts.running + counts.returned + counts.verified;
    this.db.query("UPDATE shards SET missing = ? WHERE id = ?").run(Math.max(0, redundancy - live), shardId);
    this.setShardState(shard, deriveShardState(counts, redundancy));
  }

  private setShardState(shard: ShardRecord, to: ShardState): void {
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
