import { IdempotencyConflictError, JobNotFoundError } from "../../../jobs/errors.ts";
import type { JobReport } from "../../../jobs/job-report.ts";
import type { Shard } from "../../../jobs/records.ts";
import type { JobSpec } from "../../../jobs/spec.ts";
import { InvalidInputError } from "../../../util/errors.ts";
import type {
  AggregatorApi,
  JobEvent,
  JobQuote,
  JobSummary,
  JobUploadHeader,
  OutputInfo,
  SubmitResult,
} from "../../aggregator/api.ts";
import { abortable } from "../../wire.ts";

/**
 * Test support: an in-memory `AggregatorApi` behind the real job protocol (the real aggregator is
 * tested on its own). It keeps what each upload handed it, checks the caller like the real one (a
 * job is visible only to the peer that submitted it), and lets a test script a job's events.
 */

export interface FakeJob {
  id: string;
  client: string;
  spec: JobSpec;
  shards: Shard[];
  /** Events so far; a watch yields the latest, then each new one. */
  events: JobEvent[];
  output?: OutputInfo;
}

export class FakeAggregator implements AggregatorApi {
  readonly feePercent = 5;
  readonly jobs = new Map<string, FakeJob>();
  /** The shards each `submit` call was handed, committed or not. */
  readonly uploads: Shard[][] = [];
  /** Thrown by `submit` before it reads a shard (a scheduling refusal). */
  refuse: Error | undefined;
  /** When set, `submit` waits for it after the header (to hold an upload slot). */
  gate: Promise<void> | undefined;
  /** When set, awaited after each shard is taken (a slow store). */
  perShard: (() => Promise<void>) | undefined;
  private readonly waiters = new Set<() => void>();

  existing(spec: JobSpec, client: string): SubmitResult | undefined {
    const job = [...this.jobs.values()].find((j) => j.spec.idempotencyKey === spec.idempotencyKey);
    if (!job) return undefined;
    if (job.client !== client || JSON.stringify(job.spec) !== JSON.stringify(spec)) {
      throw new IdempotencyConflictError(`idempotency key ${spec.idempotencyKey} names another job`, {
        hint: "choose a new idempotency key",
      });
    }
    return { jobId: job.id, created: false };
  }

  /** What `quote` answers (when nothing is refused). */
  quoted: JobQuote = { estimatedMsat: 1_234_000n, lockedMsat: 5_000_000n, feePercent: this.feePercent, providers: 3 };

  async quote(): Promise<JobQuote> {
    if (this.refuse) throw this.refuse;
    return this.quoted;
  }

  async submit(
    header: JobUploadHeader,
    shards: AsyncIterable<Shard>,
    client: string,
    signal: AbortSignal,
  ): Promise<SubmitResult> {
    const got: Shard[] = [];
    this.uploads.push(got);
    if (this.refuse) throw this.refuse;
    if (this.gate) await abortable(this.gate, signal);
    for await (const shard of shards) {
      got.push(shard);
      await this.perShard?.();
    }
    if (got.length !== header.plan.shardCount) throw new InvalidInputError(`${got.length} shards`);
    const id = `job-${this.jobs.size + 1}`;
    this.jobs.set(id, { id, client, spec: header.spec, shards: got, events: [] });
    return { jobId: id, created: true };
  }

  /** Adds an event to the job's history and wakes its watchers. */
  emit(jobId: string, event: JobEvent): void {
    this.jobs.get(jobId)?.events.push(event);
    for (const wake of this.waiters) wake();
  }

  async *watch(jobId: string, client: string, signal: AbortSignal): AsyncIterable<JobEvent> {
    const job = this.mine(jobId, client);
    let next = Math.max(0, job.events.length - 1);
    for (;;) {
      while (next < job.events.length) {
        const event = job.events[next++] as JobEvent;
        yield event;
        if (event.type === "finished") return;
      }
      let wake!: () => void;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      this.waiters.add(wake);
      try {
        await abortable(woken, signal);
      } finally {
        this.waiters.delete(wake);
      }
    }
  }

  async output(jobId: string, client: string): Promise<OutputInfo> {
    const job = this.mine(jobId, client);
    if (!job.output) throw new InvalidInputError(`job ${jobId} has not finished`);
    return job.output;
  }

  report(jobId: string, client: string): JobReport {
    const job = this.mine(jobId, client);
    const now = Date.now();
    return {
      job: {
        id: job.id,
        idempotencyKey: job.spec.idempotencyKey,
        spec: job.spec,
        state: "running",
        error: undefined,
        shardCount: job.shards.length,
        shardsReturned: 0,
        shardsVerified: 0,
        createdAt: now,
        updatedAt: now,
        finishedAt: undefined,
      },
      shards: job.shards.map((s) => ({
        index: s.index,
        start: s.start,
        count: s.count,
        state: "queued",
        retries: 0,
        copiesTarget: job.spec.redundancy ?? 2,
        resultSha256: undefined,
        copies: [],
      })),
      providers: [],
      retries: 0,
      wallMs: 0,
    };
  }

  private mine(jobId: string, client: string): FakeJob {
    const job = this.jobs.get(jobId);
    if (!job || job.client !== client) throw new JobNotFoundError(`no job ${jobId}`);
    return job;
  }
}

export function summary(job: FakeJob, patch: Partial<JobSummary> = {}): JobSummary {
  return {
    id: job.id,
    state: "running",
    shardCount: job.shards.length,
    shardsReturned: 0,
    shardsVerified: 0,
    retries: 0,
    ...patch,
  };
}
