import type { Database } from "bun:sqlite";
import { IntegrityError, InvalidInputError } from "../util/errors.ts";
import type { JobSpec, ShardRange } from "./spec.ts";
import type { AssignmentState, JobState, ShardState } from "./states.ts";
import type { Verification } from "./verify/verdict.ts";

/** A job as stored. Times are Unix milliseconds. */
export interface JobRecord {
  id: string;
  idempotencyKey: string;
  spec: JobSpec;
  state: JobState;
  /** Why the job failed, when it did. */
  error: string | undefined;
  shardCount: number;
  /** Shards with `redundancy` copies back (returned or verified). */
  shardsReturned: number;
  shardsVerified: number;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | undefined;
}

/** One contiguous range of input records. */
export interface ShardRecord {
  id: number;
  jobId: string;
  index: number;
  start: number;
  count: number;
  state: ShardState;
  /** Copies lost (lease expired, provider gone) or rejected so far. */
  retries: number;
  /** Copies still to lease before the shard has `redundancy` of them. */
  missing: number;
  /** The accepted result's sha256, once verified. */
  resultSha256: string | undefined;
  /** Copies this shard needs (adaptive replication), when set; otherwise the job's redundancy. */
  target: number | undefined;
  updatedAt: number;
}

/** One provider's lease on one copy of a shard. */
export interface AssignmentRecord {
  id: string;
  shardId: number;
  jobId: string;
  provider: string;
  state: AssignmentState;
  leasedAt: number;
  leaseDeadline: number;
  startedAt: number | undefined;
  returnedAt: number | undefined;
  /** When it became verified, failed or reassigned. */
  endedAt: number | undefined;
  /** Why it failed or was reassigned. */
  reason: string | undefined;
  resultSha256: string | undefined;
  /** Where the result lies when it was stored as a file rather than in the database. */
  resultPath: string | undefined;
  /** Engine time the provider reported for the copy, when it returned one. */
  computeMs: number | undefined;
  /** How the copy was checked and what came of it (jobs/verify/verdict.ts), once it was. */
  verification: Verification | undefined;
}

export interface JobRow {
  id: string;
  idempotency_key: string;
  spec_json: string;
  state: string;
  error: string | null;
  shard_count: number;
  shards_returned: number;
  shards_verified: number;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

export interface ShardRow {
  id: number;
  job_id: string;
  idx: number;
  first_record: number;
  record_count: number;
  state: string;
  retries: number;
  missing: number;
  result_sha256: string | null;
  target_copies: number | null;
  updated_at: number;
}

export interface AssignmentRow {
  id: string;
  shard_id: number;
  job_id: string;
  provider: string;
  state: string;
  leased_at: number;
  lease_deadline: number;
  started_at: number | null;
  returned_at: number | null;
  ended_at: number | null;
  reason: string | null;
  result_sha256: string | null;
  result_path: string | null;
  compute_ms: number | null;
  verification: string | null;
}

export const JOB_COLUMNS =
  "id, idempotency_key, spec_json, state, error, shard_count, shards_returned, shards_verified, created_at, updated_at, finished_at";
export const SHARD_COLUMNS =
  "id, job_id, idx, first_record, record_count, state, retries, missing, result_sha256, target_copies, updated_at";
export const ASSIGNMENT_COLUMNS =
  "id, shard_id, job_id, provider, state, leased_at, lease_deadline, started_at, returned_at, ended_at, reason, result_sha256, result_path, compute_ms, verification";

const opt = <T>(v: T | null): T | undefined => v ?? undefined;

export function toJob(r: JobRow): JobRecord {
  return {
    id: r.id,
    idempotencyKey: r.idempotency_key,
    spec: JSON.parse(r.spec_json) as JobSpec,
    state: r.state as JobState,
    error: opt(r.error),
    shardCount: r.shard_count,
    shardsReturned: r.shards_returned,
    shardsVerified: r.shards_verified,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    finishedAt: opt(r.finished_at),
  };
}

export function toShard(r: ShardRow): ShardRecord {
  return {
    id: r.id,
    jobId: r.job_id,
    index: r.idx,
    start: r.first_record,
    count: r.record_count,
    state: r.state as ShardState,
    retries: r.retries,
    missing: r.missing,
    resultSha256: opt(r.result_sha256),
    target: opt(r.target_copies),
    updatedAt: r.updated_at,
  };
}

export function toAssignment(r: AssignmentRow): AssignmentRecord {
  return {
    id: r.id,
    shardId: r.shard_id,
    jobId: r.job_id,
    provider: r.provider,
    state: r.state as AssignmentState,
    leasedAt: r.leased_at,
    leaseDeadline: r.lease_deadline,
    startedAt: opt(r.started_at),
    returnedAt: opt(r.returned_at),
    endedAt: opt(r.ended_at),
    reason: opt(r.reason),
    resultSha256: opt(r.result_sha256),
    resultPath: opt(r.result_path),
    computeMs: opt(r.compute_ms),
    verification: r.verification ? (JSON.parse(r.verification) as Verification) : undefined,
  };
}

/** JSON with object keys sorted, so two equal specs compare equal as text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

/** A shard result, held in the database or in a file; `sha256` is the digest of its bytes. */
export type StoredResult = { sha256: string; bytes: Uint8Array } | { sha256: string; path: string };

/** A result stored, or found already stored (`duplicate`). */
export interface RecordedResult {
  assignment: AssignmentRecord;
  duplicate: boolean;
}

/** One result of a batch: recorded, or refused with the error `recordResult` would throw. */
export type ResultOutcome = RecordedResult | { assignmentId: string; error: Error };

/** Refuses a malformed digest, and bytes that do not hash to the digest they came with. */
export function checkResult(result: StoredResult): void {
  if (!/^[0-9a-f]{64}$/.test(result.sha256)) throw new InvalidInputError("result sha256 must be 64 lowercase hex");
  if ("bytes" in result) {
    const actual = new Bun.CryptoHasher("sha256").update(result.bytes).digest("hex");
    if (actual !== result.sha256) throw new IntegrityError(`result bytes hash to ${actual}, not ${result.sha256}`);
  }
}

/** Inserts a job and its shards, all queued; the caller holds the transaction. */
export function insertJob(
  db: Database,
  id: string,
  spec: JobSpec,
  specJson: string,
  shards: readonly ShardRange[],
  now: number,
): void {
  db.query(
    `INSERT INTO jobs (id, idempotency_key, spec_json, model, model_sha256, redundancy, max_price_msat,
     deadline_ms, state, shard_count, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)`,
  ).run(
    id,
    spec.idempotencyKey,
    specJson,
    spec.model.name,
    spec.model.sha256,
    spec.redundancy,
    spec.maxPriceMsat,
    spec.deadlineMs,
    shards.length,
    now,
    now,
  );
  const insert = db.query(
    `INSERT INTO shards (job_id, idx, first_record, record_count, state, missing, updated_at)
     VALUES (?, ?, ?, ?, 'queued', ?, ?)`,
  );
  for (const [i, s] of shards.entries()) insert.run(id, i, s.start, s.count, spec.redundancy, now);
}
