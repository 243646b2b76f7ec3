import type { PeerId, Startable } from "@libp2p/interface";
import type { ConnectionManager, Registrar } from "@libp2p/interface-internal";
import type { JobReport } from "../../../jobs/job-report.ts";
import type { Shard } from "../../../jobs/records.ts";
import type { AggregatorApi, JobEvent, JobQuote, JobUploadHeader, SubmitResult } from "../../aggregator/api.ts";
import { ProtocolLifecycle } from "../lifecycle.ts";
import { positive } from "../settings.ts";
import type { CallContext } from "./call.ts";
import { type FetchedOutput, type FetchOutputOptions, fetchJobOutput } from "./download.ts";
import { fetchQuote, fetchReport, watchJob } from "./requester.ts";
import { JobServer } from "./server.ts";
import { type SubmitOptions, submitJob } from "./submit.ts";

/**
 * /infernet/job/1.0.0: a client submits a batch job to an aggregator (the header, then its shards),
 * follows its progress, downloads the merged output and reads its report. See messages.ts for the
 * frames, server.ts for the aggregator's side (it serves an `AggregatorApi`), submit.ts,
 * requester.ts and download.ts for the client's, and follow.ts for watching across restarts.
 */
export const JOB_PROTOCOL = "/infernet/job/1.0.0";
/** Uploads an aggregator serves at once, by default; one more is refused with "busy". */
export const DEFAULT_MAX_UPLOADS = 4;
/** How long an aggregator waits for each frame a client sends, by default (a client's splitter makes each shard meanwhile). */
export const DEFAULT_FRAME_TIMEOUT_MS = 60_000;
/** An aggregator that has written nothing for this long sends a keepalive frame, by default. */
export const KEEPALIVE_MS = 2_000;
/**
 * A client gives up on an aggregator that sent no frame at all (keepalives included) for this long,
 * on every call, watch included: its process or its machine is gone.
 */
export const QUIET_TIMEOUT_MS = 20_000;
/** Job streams open at once on one connection, each way (watches of several jobs, an upload, a download). */
export const MAX_INBOUND_STREAMS = 16;
export const MAX_OUTBOUND_STREAMS = 16;

export { RemoteJobError } from "./errors.ts";
export { type FinishedEvent, type FollowOptions, followJob, RECONNECT_WINDOW_MS } from "./follow.ts";
export {
  JOB_ERROR_CODES,
  type JobErrorCode,
  MAX_REPORT_BYTES,
  MAX_SHARD_FRAME_BYTES,
  OUTPUT_CHUNK_BYTES,
  UPLOAD_WINDOW_BYTES,
} from "./messages.ts";
export type { FetchedOutput, FetchOutputOptions, SubmitOptions };

export interface JobInit {
  /** The aggregator served to peers. Absent = this node serves no jobs (peers get "protocol not supported"). */
  aggregator?: () => AggregatorApi | undefined;
  /** Uploads served at once (default `DEFAULT_MAX_UPLOADS`). */
  maxUploads?: number;
  /** Longest wait for each frame a client sends (default `DEFAULT_FRAME_TIMEOUT_MS`). */
  frameTimeoutMs?: number;
  /** Quiet time before a keepalive frame (default `KEEPALIVE_MS`); keep it well under the clients' quiet timeout. */
  keepaliveMs?: number;
  /** Client side: silence after which an aggregator counts as gone (default `QUIET_TIMEOUT_MS`). */
  quietTimeoutMs?: number;
}

export interface JobComponents {
  registrar: Registrar;
  connectionManager: ConnectionManager;
  peerId: PeerId;
}

export interface JobService extends Startable {
  /**
   * Submits a job to the aggregator `peer`: its header, then (unless the idempotency key names a job
   * it holds, `created: false`) every shard, in order. Throws `IdempotencyConflictError`,
   * `InvalidInputError` (a shard that does not fit the plan, locally or remotely),
   * `ModelNotServedError`, `PriceTooLowError`, `DeadlineTooShortError`, `NoProviderError`,
   * `RemoteJobError` (busy, unavailable, failed, broken stream), `AbortedError` or `TimeoutError`.
   */
  submit(
    peer: PeerId,
    header: JobUploadHeader,
    shards: AsyncIterable<Shard>,
    options?: SubmitOptions,
  ): Promise<SubmitResult>;
  /** What a job would cost and lock at `peer`, asked before its upload; refused as `submit` would refuse it. */
  quote(peer: PeerId, header: JobUploadHeader, options?: { signal?: AbortSignal }): Promise<JobQuote>;
  /** The job's events, ending after `finished`; `JobNotFoundError` for a job that is not the caller's. */
  watch(peer: PeerId, jobId: string, options?: { signal?: AbortSignal }): AsyncIterable<JobEvent>;
  /**
   * Downloads a verified job's merged output to `destPath` (resuming `destPath + ".partial"`), checking
   * its sha256: `IntegrityError` on a mismatch (the partial file is deleted), `JobNotFoundError`,
   * `InvalidInputError` (not finished).
   */
  fetchOutput(peer: PeerId, jobId: string, destPath: string, options?: FetchOutputOptions): Promise<FetchedOutput>;
  /** The job's report (at most `MAX_REPORT_BYTES`). */
  report(peer: PeerId, jobId: string, options?: { signal?: AbortSignal }): Promise<JobReport>;
}

class DefaultJobService implements JobService {
  private readonly server: JobServer | undefined;
  private readonly context: CallContext;
  private readonly life: ProtocolLifecycle;

  constructor(components: JobComponents, init: JobInit) {
    const keepaliveMs = positive("keepaliveMs", init.keepaliveMs ?? KEEPALIVE_MS);
    this.server = init.aggregator
      ? new JobServer({
          aggregator: init.aggregator,
          maxUploads: positive("maxUploads", init.maxUploads ?? DEFAULT_MAX_UPLOADS),
          frameTimeoutMs: positive("frameTimeoutMs", init.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS),
          keepaliveMs,
        })
      : undefined;
    this.life = new ProtocolLifecycle({
      registrar: components.registrar,
      protocol: JOB_PROTOCOL,
      // Only an aggregator takes jobs; everyone else is a client of this protocol.
      server: this.server,
      maxInboundStreams: MAX_INBOUND_STREAMS,
      maxOutboundStreams: MAX_OUTBOUND_STREAMS,
    });
    this.context = {
      connectionManager: components.connectionManager,
      protocol: JOB_PROTOCOL,
      quietTimeoutMs: positive("quietTimeoutMs", init.quietTimeoutMs ?? QUIET_TIMEOUT_MS),
      inFlight: this.life.calls,
    };
  }

  readonly [Symbol.toStringTag] = "@infernet/job";

  start(): Promise<void> {
    return this.life.start();
  }

  stop(): Promise<void> {
    return this.life.stop();
  }

  isStarted(): boolean {
    return this.life.isStarted();
  }

  async submit(
    peer: PeerId,
    header: JobUploadHeader,
    shards: AsyncIterable<Shard>,
    options: SubmitOptions = {},
  ): Promise<SubmitResult> {
    this.checkRunning();
    return await submitJob(this.context, peer, header, shards, options);
  }

  async quote(peer: PeerId, header: JobUploadHeader, options: { signal?: AbortSignal } = {}): Promise<JobQuote> {
    this.checkRunning();
    return await fetchQuote(this.context, peer, header, options);
  }

  watch(peer: PeerId, jobId: string, options: { signal?: AbortSignal } = {}): AsyncIterable<JobEvent> {
    if (this.life.stopped) return refuse(this.life.stoppedError());
    return watchJob(this.context, peer, jobId, options);
  }

  async fetchOutput(
    peer: PeerId,
    jobId: string,
    destPath: string,
    options: FetchOutputOptions = {},
  ): Promise<FetchedOutput> {
    this.checkRunning();
    return await fetchJobOutput(this.context, peer, jobId, destPath, options);
  }

  async report(peer: PeerId, jobId: string, options: { signal?: AbortSignal } = {}): Promise<JobReport> {
    this.checkRunning();
    return await fetchReport(this.context, peer, jobId, options);
  }

  private checkRunning(): void {
    if (this.life.stopped) throw this.life.stoppedError();
  }
}

/** The libp2p service factory: `services: { job: jobProtocol({ aggregator: () => api }) }`. */
export function jobProtocol(init: JobInit = {}): (components: JobComponents) => JobService {
  return (components) => new DefaultJobService(components, init);
}

// biome-ignore lint/correctness/useYield: an iterable that fails when iterated, like a refused call
async function* refuse(error: Error): AsyncGenerator<JobEvent> {
  throw error;
}
