import type { JobReport } from "../../jobs/job-report.ts";
import type { Shard } from "../../jobs/records.ts";
import type { JobEvent, JobQuote, JobUploadHeader, SubmitResult } from "../aggregator/api.ts";

/**
 * What a client does with batch jobs, whichever way it reaches the network: through the running
 * node's control socket (`jobs-client.ts`) or with a node of its own (`jobs-node.ts`). `infernet
 * submit` and `infernet job` are written against this alone.
 */

/** An aggregator as a client reaches it: its peer id and the addresses to dial. */
export interface AggregatorRef {
  peerId: string;
  addrs: string[];
}

/** An aggregator found on the network, with the fee it announced. */
export interface AggregatorChoice extends AggregatorRef {
  feePercent: number;
}

export type FinishedEvent = Extract<JobEvent, { type: "finished" }>;

export interface OutputFetched {
  bytes: number;
  sha256: string;
  records: number;
}

export interface FollowOptions {
  signal: AbortSignal;
  onEvent(event: JobEvent): void;
  /** The watch stream was lost (the aggregator restarted, say) and is being opened again. */
  onReconnect?(reason: string): void;
}

export interface JobOps {
  /** This side's peer id (the client the aggregator sees). */
  readonly peerId: string;
  findAggregators(signal: AbortSignal): Promise<AggregatorChoice[]>;
  /** The aggregator's quote for the job, before its upload (refused as a submit would be). */
  quote(aggregator: AggregatorRef, header: JobUploadHeader, signal: AbortSignal): Promise<JobQuote>;
  submit(
    aggregator: AggregatorRef,
    header: JobUploadHeader,
    shards: AsyncIterable<Shard>,
    options: { signal: AbortSignal; onUploaded?(shards: number, bytes: number): void },
  ): Promise<SubmitResult>;
  /** Follows a job until it finishes (across an aggregator restart); resolves with `finished`. */
  follow(aggregator: AggregatorRef, jobId: string, options: FollowOptions): Promise<FinishedEvent>;
  /** Downloads a verified job's merged output to `dest` (resumed when `dest` holds a prefix), sha256-checked. */
  fetchOutput(
    aggregator: AggregatorRef,
    jobId: string,
    dest: string,
    options: { signal: AbortSignal; onBytes?(bytes: number): void },
  ): Promise<OutputFetched>;
  report(aggregator: AggregatorRef, jobId: string, signal: AbortSignal): Promise<JobReport>;
}
