import type { JobReport } from "../../jobs/job-report.ts";
import type { Shard, ShardPayload, ShardPlan } from "../../jobs/records.ts";
import type { JobSpec } from "../../jobs/spec.ts";
import type { JobState } from "../../jobs/states.ts";

/**
 * What an aggregator offers its clients, independent of the wire: the job protocol
 * (`protocols/job/`) serves this to peers, and tests drive it directly. `client` is always the
 * peer id of the caller as authenticated by the connection (Noise), never a claim in a message:
 * a job is visible only to the peer that submitted it.
 */

/** What a client declares before uploading a job's shards. */
export interface JobUploadHeader {
  spec: JobSpec;
  /** How the client's splitter cut the input: the aggregator checks every shard against it. */
  plan: ShardPlan;
  /** What every shard carries. */
  kind: ShardPayload["kind"];
  /**
   * How the client pays: absent, from its credit here (a channel deposit); "lightning", a hold
   * invoice for the job's quote that the quote answers with (aggregator/lightning.ts).
   */
  pay?: "lightning";
}

export interface SubmitResult {
  jobId: string;
  /** False when the idempotency key named a job this aggregator already holds (nothing was stored). */
  created: boolean;
}

/**
 * What an aggregator tells a client before the upload: what the job should cost at the prices the
 * providers announce now, and what it locks in escrow (the client's maximum; what verified copies do
 * not take goes back when the job ends). Amounts in msat.
 */
export interface JobQuote {
  /** The providers' prices for every copy of every record (canaries and reassignments aside), plus the fee. */
  estimatedMsat: bigint;
  /** Locked from the client's credit when the job is stored; 0 when this aggregator takes no payment. */
  lockedMsat: bigint;
  feePercent: number;
  /** Providers that may take copies now. */
  providers: number;
  /** With `pay: "lightning"`: the hold invoice for `lockedMsat` the client pays before its upload. */
  invoice?: string;
}

/** Where a finished job's merged output lies on the aggregator, for download. */
export interface OutputInfo {
  /** The JSONL file (text: `{index, output, providers}`; classification: `{index, class, label, score, providers}`). */
  path: string;
  bytes: number;
  sha256: string;
  records: number;
}

/** A job's state as the watch stream reports it. */
export interface JobSummary {
  id: string;
  state: JobState;
  shardCount: number;
  shardsReturned: number;
  shardsVerified: number;
  /** Copies lost or rejected so far (reassignments). */
  retries: number;
  /** Why it failed, when it did. */
  error?: string;
  /** Expected to miss its deadline (the aggregator keeps going; the client may cancel). */
  late?: boolean;
}

/**
 * The watch stream. `progress` comes first (a full picture) and again whenever something changed,
 * at most every `PROGRESS_INTERVAL_MS`; `shards` holds one state code per shard (an index into
 * `SHARD_STATES`), so a client can draw a bar per shard. `finished` ends the stream: verified with
 * the output to fetch, or failed with the reason.
 */
export type JobEvent =
  | { type: "progress"; job: JobSummary; shards: Uint8Array }
  | { type: "finished"; job: JobSummary; output?: Omit<OutputInfo, "path"> };

export interface AggregatorApi {
  /** The aggregator's fee, percent of what the providers are paid. */
  readonly feePercent: number;
  /**
   * Before an upload: the job this idempotency key already names (same spec, same client), or
   * undefined when the shards must be uploaded. Throws `IdempotencyConflictError` for the same key
   * with another spec or from another client.
   */
  existing(spec: JobSpec, client: string): SubmitResult | undefined;
  /**
   * Before an upload: what the job would cost and lock, once the checks `submit` makes before a shard
   * is read have passed (the same typed refusals).
   */
  quote(header: JobUploadHeader, client: string, signal: AbortSignal): Promise<JobQuote>;
  /**
   * Stores an uploaded job (checked as `quote` checks, unless given the quote just made for it): `shards` arrive in order and each must match `header.plan` and
   * `header.kind`; the job, its shards and their payloads are committed in one transaction once the
   * last one is in, and scheduling starts. Throws `InvalidInputError` for a shard that does not fit,
   * a `SchedulingError` (model served by nobody, price too low, deadline too short) before anything
   * is stored, `AbortedError` when `signal` aborts (nothing is stored).
   */
  submit(
    header: JobUploadHeader,
    shards: AsyncIterable<Shard>,
    client: string,
    signal: AbortSignal,
    quote?: JobQuote,
  ): Promise<SubmitResult>;
  /** The job's events until it is verified or failed; `JobNotFoundError` for another client's job. */
  watch(jobId: string, client: string, signal: AbortSignal): AsyncIterable<JobEvent>;
  /** The merged output of a verified job; `JobNotFoundError` (unknown, or not this client's) or `InvalidInputError` (not finished). */
  output(jobId: string, client: string): Promise<OutputInfo>;
  /** Shards, providers, timings, retries and cost; `JobNotFoundError` for another client's job. */
  report(jobId: string, client: string): JobReport;
}
