import type { Store } from "../store/db.ts";
import { JOB_STATES, type JobState } from "./states.ts";

/**
 * The client's side of batch jobs: every job submitted from this INFERNET_HOME, with the aggregator
 * that holds it and that aggregator's addresses, so `infernet jobs` can list them and `infernet job
 * <id>` can reach the aggregator again after this process (or the machine) went away. The row is
 * keyed by idempotency key as well, so a submit re-run after a crash finds its job instead of paying
 * twice.
 */

/** The aggregator's job states, plus `fetched`: verified and its output is on this machine. */
export const SUBMITTED_STATES = [...JOB_STATES, "fetched"] as const;
export type SubmittedState = JobState | "fetched";

/** Most rows `list` returns when the caller gives no limit. */
export const DEFAULT_LIST_LIMIT = 100;

export interface SubmittedJob {
  jobId: string;
  /** The aggregator's peer id. */
  aggregator: string;
  /** Where it was reached (multiaddrs), to dial it again without discovery. */
  aggregatorAddrs: string[];
  idempotencyKey: string;
  /** Catalog name of the model. */
  model: string;
  records: number;
  shardCount: number;
  /** Absolute path the merged output is written to. */
  outputPath: string;
  state: SubmittedState;
  /** Why it failed, when it did. */
  error: string | undefined;
  submittedAt: number;
  updatedAt: number;
}

interface Row {
  job_id: string;
  aggregator: string;
  aggregator_addrs: string;
  idempotency_key: string;
  model: string;
  records: number;
  shard_count: number;
  output_path: string;
  state: string;
  error: string | null;
  submitted_at: number;
  updated_at: number;
}

const COLUMNS =
  "job_id, aggregator, aggregator_addrs, idempotency_key, model, records, shard_count, output_path, state, error, submitted_at, updated_at";

function toJob(row: Row): SubmittedJob {
  const addrs: unknown = JSON.parse(row.aggregator_addrs);
  return {
    jobId: row.job_id,
    aggregator: row.aggregator,
    aggregatorAddrs: Array.isArray(addrs) ? addrs.filter((a): a is string => typeof a === "string") : [],
    idempotencyKey: row.idempotency_key,
    model: row.model,
    records: row.records,
    shardCount: row.shard_count,
    outputPath: row.output_path,
    state: (SUBMITTED_STATES as readonly string[]).includes(row.state) ? (row.state as SubmittedState) : "queued",
    error: row.error ?? undefined,
    submittedAt: row.submitted_at,
    updatedAt: row.updated_at,
  };
}

export class SubmittedJobs {
  private readonly db: Store["db"];

  constructor(
    store: Store,
    private readonly now: () => number = Date.now,
  ) {
    this.db = store.db;
  }

  /**
   * Records a submission once the aggregator accepted it. The idempotency key is unique: a key that
   * was recorded for another job or aggregator (the first aggregator was lost) now names this one.
   */
  record(
    job: Omit<SubmittedJob, "submittedAt" | "updatedAt" | "error" | "state"> & { state?: SubmittedState },
  ): SubmittedJob {
    const at = this.now();
    this.db
      .transaction(() => {
        this.db
          .query("DELETE FROM submitted_jobs WHERE idempotency_key = ? AND NOT (job_id = ? AND aggregator = ?)")
          .run(job.idempotencyKey, job.jobId, job.aggregator);
        this.db
          .query(
            `INSERT INTO submitted_jobs (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)
             ON CONFLICT (job_id, aggregator) DO UPDATE SET aggregator_addrs = excluded.aggregator_addrs,
               output_path = excluded.output_path, updated_at = excluded.updated_at`,
          )
          .run(
            job.jobId,
            job.aggregator,
            JSON.stringify(job.aggregatorAddrs),
            job.idempotencyKey,
            job.model,
            job.records,
            job.shardCount,
            job.outputPath,
            job.state ?? "queued",
            at,
            at,
          );
      })
      .immediate();
    return this.get(job.jobId, job.aggregator) as SubmittedJob;
  }

  /** The job with this id (the newest, should two aggregators have used the same id). */
  get(jobId: string, aggregator?: string): SubmittedJob | undefined {
    const row =
      aggregator === undefined
        ? this.db
            .query<Row, [string]>(
              `SELECT ${COLUMNS} FROM submitted_jobs WHERE job_id = ? ORDER BY submitted_at DESC, rowid DESC LIMIT 1`,
            )
            .get(jobId)
        : this.db
            .query<Row, [string, string]>(`SELECT ${COLUMNS} FROM submitted_jobs WHERE job_id = ? AND aggregator = ?`)
            .get(jobId, aggregator);
    return row ? toJob(row) : undefined;
  }

  byKey(idempotencyKey: string): SubmittedJob | undefined {
    const row = this.db
      .query<Row, [string]>(`SELECT ${COLUMNS} FROM submitted_jobs WHERE idempotency_key = ?`)
      .get(idempotencyKey);
    return row ? toJob(row) : undefined;
  }

  /** Newest first. */
  list(limit = DEFAULT_LIST_LIMIT): SubmittedJob[] {
    return this.db
      .query<Row, [number]>(`SELECT ${COLUMNS} FROM submitted_jobs ORDER BY submitted_at DESC, rowid DESC LIMIT ?`)
      .all(limit)
      .map(toJob);
  }

  /** Keeps the recorded state current; a `fetched` job is not moved back by a late event. */
  update(jobId: string, aggregator: string, state: SubmittedState, error?: string): void {
    this.db
      .query(
        `UPDATE submitted_jobs SET state = ?, error = ?, updated_at = ?
         WHERE job_id = ? AND aggregator = ? AND (state != 'fetched' OR ? = 'fetched')`,
      )
      .run(state, error ?? null, this.now(), jobId, aggregator, state);
  }
}
