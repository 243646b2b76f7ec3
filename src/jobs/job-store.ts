import { logger } from "../util/logger.ts";
import {
  IdempotencyConflictError,
  IllegalTransitionError,
  LeaseLostError,
  LeaseRefusedError,
  ResultConflictError,
} from "./errors.ts";
import { JobBookkeeping } from "./job-bookkeeping.ts";
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
  assertShardTransition,
  IN_FLIGHT_ASSIGNMENT_STATES,
  LIVE_ASSIGNMENT_STATES,
  TERMINAL_JOB_STATES,
  TERMINAL_SHARD_STATES,
} from "./states.ts";
import type { Verification } from "./verify/verdict.ts";

const log = logger("jobs");

export { DEFAULT_MAX_SHARD_RETRIES, type JobStoreInit } from "./job-bookkeeping.ts";

/** Why a copy still in flight is failed when its shard is verified without it. */
export const SUPERSEDED_REASON = "shard already verified";

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
export class JobStore extends JobBookkeeping {
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

  /**
   * Leases an extra copy of a shard beyond its redundancy (a speculative copy near the end of a job,
   * when another copy is slow), which `lease` refuses because the shard has all its copies. At most
   * `extraCopies` beyond the redundancy, never to a provider that holds a copy or had one rejected.
   *
   * It only adds a leased assignment, which leaves the shard's derived state and `missing` as they
   * were: the shard is `leased` or `running` because a copy is in flight, and `missing` stays 0. The
   * first `redundancy` copies back make it `returned`; `verifyShard` then fails whichever copy is still
   * in flight, and a late result for it is refused as for any lost lease, so nothing counts twice.
   */
  leaseExtra(shardId: number, provider: string, leaseMs: number, extraCopies = 1): AssignmentRecord {
    return this.tx(() => {
      const shard = this.shard(shardId);
      if (shard.state !== "leased" && shard.state !== "running") {
        throw new IllegalTransitionError(
          `shard ${shardId} is ${shard.state}: only a shard in flight gets an extra copy`,
        );
      }
      const copies = this.assignments(shardId).filter((a) => LIVE_ASSIGNMENT_STATES.includes(a.state));
      if (!copies.some((a) => IN_FLIGHT_ASSIGNMENT_STATES.includes(a.state))) {
        throw new LeaseRefusedError(`shard ${shardId} has no copy in flight to duplicate`);
      }
      if (copies.length >= this.targetCopies(shardId) + extraCopies) {
        throw new LeaseRefusedError(`shard ${shardId} already has ${copies.length} copies`);
      }
      if (copies.some((a) => a.provider === provider) || this.rejectedBefore(shardId, provider)) {
        throw new LeaseRefusedError(`provider ${provider} already holds a copy of shard ${shardId}`);
      }
      const id = this.newId();
      const now = this.now();
      this.db
        .query(
          `INSERT INTO assignments (id, shard_id, job_id, provider, state, leased_at, lease_deadline)
           VALUES (?, ?, ?, ?, 'leased', ?, ?)`,
        )
        .run(id, shardId, shard.jobId, provider, now, now + leaseMs);
      return this.assignment(id);
    });
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
   * `alike` are digests of other results accepted as the same answer (within the model's tolerance,
   * see verify/compare.ts): their copies are verified too; `sha256` is the one merged.
   */
  verifyShard(shardId: number, sha256: string, alike: readonly string[] = []): ShardRecord {
    return this.tx(() => {
      const shard = this.shard(shardId);
      assertShardTransition(String(shardId), shard.state, "verified");
      const copies = this.assignments(shardId);
      if (!copies.some((a) => (a.state === "returned" || a.state === "disputed") && a.resultSha256 === sha256)) {
        throw new ResultConflictError(`no copy of shard ${shardId} returned ${sha256}`);
      }
      const accepted = new Set([sha256, ...alike]);
      const now = this.now();
      for (const a of copies) {
        const held = a.state === "returned" || a.state === "disputed";
        if (held && accepted.has(a.resultSha256 as string))
          this.moveAssignment(a, "verified", { ended_at: now }, false);
        else if (held) this.moveAssignment(a, "failed", { ended_at: now, reason: "result rejected" }, false);
        else if (a.state === "leased" || a.state === "running") {
          this.moveAssignment(a, "failed", { ended_at: now, reason: SUPERSEDED_REASON }, false);
        }
      }
      this.db.query("UPDATE shards SET result_sha256 = ? WHERE id = ?").run(sha256, shardId);
      this.setShardState(shard, "verified");
      return this.shard(shardId);
    });
  }

  /**
   * Sets how many copies the shard needs (adaptive replication: fewer for a trusted provider's
   * shard, the job's redundancy again after a fault); never above the job's redundancy.
   */
  setTarget(shardId: number, copies: number): void {
    this.tx(() => {
      const shard = this.shard(shardId);
      if (TERMINAL_SHARD_STATES.includes(shard.state)) return;
      const n = Math.max(1, Math.min(this.redundancy(shard.jobId), copies));
      this.db.query("UPDATE shards SET target_copies = ? WHERE id = ?").run(n, shardId);
      this.refreshShard(shardId);
    });
  }

  /** Records how a copy was checked (see verify/verdict.ts). */
  setVerification(assignmentId: string, verification: Verification): void {
    this.db
      .query("UPDATE assignments SET verification = ? WHERE id = ?")
      .run(JSON.stringify(verification), assignmentId);
  }

  /**
   * A provider was caught wrong: every copy it holds in unfinished jobs is failed. A copy still in
   * flight or waiting for its twin frees its place (a late result for it is refused like any lost
   * lease); a verified one reopens its shard when no other provider's verified copy vouches for it
   * (the job's redundancy again). Finished jobs are left alone (their output is delivered). `except`:
   * a copy the caller is deciding itself (the loser of the vote being settled). Returns the shards
   * reopened.
   */
  disown(provider: string, reason: string, except?: string): ShardRecord[] {
    return this.tx(() => {
      const rows = this.db
        .query<AssignmentRow, [string]>(
          `SELECT ${ASSIGNMENT_COLUMNS.split(", ")
            .map((c) => `a.${c}`)
            .join(", ")} FROM assignments a JOIN jobs j ON j.id = a.job_id
           WHERE a.provider = ? AND a.state IN ('leased', 'running', 'returned', 'disputed', 'verified')
             AND j.state NOT IN ('verified', 'failed')`,
        )
        .all(provider)
        .map(toAssignment)
        .filter((a) => a.id !== except);
      const now = this.now();
      const reopened: ShardRecord[] = [];
      for (const a of rows) {
        if (a.state !== "verified") {
          this.moveAssignment(a, "failed", { ended_at: now, reason });
          continue;
        }
        this.moveAssignment(a, "failed", { ended_at: now, reason }, false);
        const others = this.assignments(a.shardId).filter((c) => c.state === "verified");
        const shard = this.shard(a.shardId);
        if (others.length > 0 || shard.state !== "verified") continue;
        this.db.query("UPDATE shards SET result_sha256 = NULL, target_copies = NULL WHERE id = ?").run(shard.id);
        this.setShardState(shard, "reassigned");
        this.refreshShard(shard.id);
        reopened.push(this.shard(shard.id));
      }
      if (rows.length > 0)
        log.warn("copies of a banned provider disowned", { provider, copies: rows.length, reopened: reopened.length });
      return reopened;
    });
  }
}
