import { estimatedCostMsat } from "../../jobs/feasibility.ts";
import type { JobReport } from "../../jobs/job-report.ts";
import { tokensPerRecord } from "../../jobs/job-snapshot.ts";
import { planShards, type Shard } from "../../jobs/records.ts";
import { checkSchedulable, type PlanJob } from "../../jobs/scheduler.ts";
import { shardToWire } from "../../jobs/shard-codec.ts";
import { parseJobSpec, shardRanges } from "../../jobs/spec.ts";
import { SHARD_STATES } from "../../jobs/states.ts";
import { type Msat, ZERO_MSAT } from "../../payments/amount.ts";
import type { LightningRail } from "../../payments/lightning/lightning-rail.ts";
import type { Store } from "../../store/db.ts";
import { throwIfAborted } from "../../util/abort.ts";
import { errorMessage, InvalidInputError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import type { CapabilityRecord } from "../protocols/capability/messages.ts";
import { encode } from "../wire.ts";
import type {
  AggregatorApi,
  JobEvent,
  JobQuote,
  JobSummary,
  JobUploadHeader,
  OutputInfo,
  SubmitResult,
} from "./api.ts";
import { Coordinator, type CoordinatorInit } from "./coordinator.ts";
import { AggregatorLightning } from "./lightning.ts";
import { mergeJob } from "./merge-job.ts";
import type { AggregatorNetwork } from "./network.ts";
import { AggregatorPayments } from "./payments.ts";
import { clientPrice, clientRefusal, providerBudget } from "./plan-job.ts";
import { AggregatorStore } from "./store.ts";

/**
 * An aggregator: takes batch jobs from clients (already cut into shards), keeps them in SQLite, has
 * the coordinator run every shard on `redundancy` different providers, merges the verified results
 * into one output file, and tells watching clients how it goes. `start()` resumes whatever a
 * previous process left unfinished.
 */
const log = logger("aggregator");

/** Largest job (all shard payloads together) an aggregator stores for one client submission. */
export const MAX_JOB_UPLOAD_BYTES = 4 * 1024 ** 3;
/** Watchers get a progress event at most this often. */
export const PROGRESS_INTERVAL_MS = 200;
/** A watcher looks at its job at least this often even when told nothing (a missed wake-up costs no more). */
export const WATCH_POLL_MS = 1_000;

const SHARD_CODES: Readonly<Record<string, number>> = Object.fromEntries(SHARD_STATES.map((s, i) => [s, i]));

export interface AggregatorInit
  extends Omit<CoordinatorInit, "network" | "store" | "db" | "onChange" | "onVerified" | "payments"> {
  network: AggregatorNetwork;
  store: Store;
  /** INFERNET_HOME: outputs go under `jobs/<id>/`. */
  home: string;
  feePercent: number;
  /**
   * Take payment: a job is accepted only when its client's credit here covers its quote, which is
   * locked in escrow with the job, released per verified copy and refunded when the job ends
   * (payments.ts). Without it jobs run unpaid and the books stay empty.
   */
  escrow?: boolean;
  /** With escrow: a provider gets copies only while its bond here is at least this (default 0). */
  minBondMsat?: Msat;
  /** With escrow: jobs may be paid with a Lightning hold invoice through this node's LND (lightning.ts). */
  lightning?: LightningRail;
}

export class Aggregator implements AggregatorApi {
  readonly feePercent: number;
  readonly store: AggregatorStore;
  /** The books, when this aggregator takes payment. */
  readonly payments: AggregatorPayments | undefined;
  /** Jobs paid with Lightning hold invoices, when this aggregator has LND and takes payment. */
  readonly lightning: AggregatorLightning | undefined;
  private readonly coordinator: Coordinator;
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly merging = new Map<string, Promise<void>>();
  private readonly mergeErrors = new Map<string, string>();
  private readonly now: () => number;

  constructor(private readonly init: AggregatorInit) {
    this.feePercent = init.feePercent;
    this.now = init.now ?? Date.now;
    this.store = new AggregatorStore(init.store, this.now);
    this.payments = init.escrow
      ? new AggregatorPayments(init.store, this.store, this.now, init.minBondMsat ?? ZERO_MSAT)
      : undefined;
    this.coordinator = new Coordinator({
      ...init,
      store: this.store,
      db: init.store,
      ...(this.payments ? { payments: this.payments } : {}),
      onChange: (jobId) => this.touch(jobId),
      onVerified: (jobId) => this.merge(jobId),
    });
    this.lightning =
      init.lightning && this.payments
        ? new AggregatorLightning(init.lightning, init.store, this.payments, this.store, this.now)
        : undefined;
  }

  start(): void {
    const dropped = this.store.discardStaleUploads(true);
    if (dropped > 0) log.info("unfinished uploads dropped", { shards: dropped });
    // Books that do not add up stop the aggregator before it moves any more money.
    this.payments?.check();
    this.coordinator.recover();
    for (const jobId of this.store.unmergedJobs()) this.merge(jobId);
    this.coordinator.start();
    this.lightning?.start();
  }

  async stop(): Promise<void> {
    await this.lightning?.stop();
    await this.coordinator.stop();
    await Promise.allSettled([...this.merging.values()]);
    await this.init.network.close?.();
    for (const jobId of [...this.waiters.keys()]) this.touch(jobId);
  }

  existing(spec: JobUploadHeader["spec"], client: string): SubmitResult | undefined {
    return this.store.existing(spec, client);
  }

  async quote(header: JobUploadHeader, client: string, signal: AbortSignal): Promise<JobQuote> {
    const spec = parseJobSpec(header.spec);
    const plan = checkPlan(header);
    // Refuse before the upload what could never run: nobody serves the model, too cheap, too late.
    const providers = await this.init.network.findProviders(spec.model.sha256, signal);
    const perRecord = tokensPerRecord(spec);
    const draft: PlanJob = {
      id: "new job",
      sha256: spec.model.sha256,
      redundancy: spec.redundancy,
      maxPriceMsat: providerBudget(spec.maxPriceMsat, this.feePercent),
      deadlineMs: spec.deadlineMs,
      totalTokens: plan.records * perRecord,
      tokensPerRecord: perRecord,
      shards: shardRanges(plan).map((r, i) => ({
        id: i,
        index: i,
        count: r.count,
        done: false,
        missing: spec.redundancy,
        copies: [],
      })),
    };
    const own = this.init.network.knownProviders(spec.model.sha256).filter((r) => r.peerId === this.init.network.self);
    let eligible: CapabilityRecord[];
    try {
      // Providers without the bond this aggregator asks for get no work, so the quote counts none of them.
      const unbonded = new Set(this.payments?.unbonded(providers.map((p) => p.peerId)) ?? []);
      const bonded = providers.filter((p) => !unbonded.has(p.peerId));
      eligible = checkSchedulable(draft, [...own, ...bonded], this.now()).eligible;
    } catch (err) {
      throw clientRefusal(err as Error, spec.maxPriceMsat, this.feePercent);
    }
    const quote: JobQuote = {
      estimatedMsat: BigInt(clientPrice(estimatedCostMsat(draft, eligible), this.feePercent)),
      lockedMsat: this.payments ? this.payments.quote(spec) : 0n,
      feePercent: this.feePercent,
      providers: eligible.length,
    };
    if (header.pay !== "lightning") {
      this.payments?.checkCredit(client, spec);
      return quote;
    }
    // Paid with a hold invoice for the quote instead of from the client's credit here.
    if (!this.lightning || !this.payments) {
      throw new InvalidInputError("this aggregator takes no Lightning payment", {
        hint: "pay from a channel deposit (`infernet wallet pay <amount> --to <aggregator> --memo deposit`)",
      });
    }
    return { ...quote, invoice: await this.lightning.hold(spec, client, this.payments.quote(spec), signal) };
  }

  async submit(
    header: JobUploadHeader,
    shards: AsyncIterable<Shard>,
    client: string,
    signal: AbortSignal,
    quote?: JobQuote,
  ): Promise<SubmitResult> {
    const spec = parseJobSpec(header.spec);
    const plan = checkPlan(header);
    const known = this.store.existing(spec, client);
    if (known) return known;
    if (!quote) await this.quote(header, client, signal);
    // A job paid over Lightning starts only once its hold is funded (the money is held, not ours yet).
    const held = header.pay === "lightning" && (await this.lightning?.funded(spec, client, signal)) === true;
    if (header.pay === "lightning" && !held) throw new InvalidInputError("this job's Lightning hold was never made");
    const ranges = shardRanges(plan);

    const uploadId = crypto.randomUUID();
    try {
      let next = 0;
      let bytes = 0;
      for await (const shard of shards) {
        throwIfAborted(signal);
        const range = ranges[next];
        if (!range || shard.index !== next || shard.start !== range.start || shard.count !== range.count) {
          throw new InvalidInputError(
            `shard ${shard.index} (records ${shard.start}+${shard.count}) does not fit the job's plan at shard ${next}`,
          );
        }
        if (shard.payload.kind !== header.kind) {
          throw new InvalidInputError(`shard ${shard.index} carries ${shard.payload.kind}, the job ${header.kind}`);
        }
        const payload = encode(shardToWire(shard));
        bytes += payload.byteLength;
        if (bytes > MAX_JOB_UPLOAD_BYTES) {
          throw new InvalidInputError(`the job is larger than the ${MAX_JOB_UPLOAD_BYTES} bytes an aggregator stores`, {
            hint: "split it into several jobs",
          });
        }
        this.store.stageShard(uploadId, shard.index, payload);
        next++;
      }
      throwIfAborted(signal);
      if (next !== plan.shardCount) throw new InvalidInputError(`${next} of ${plan.shardCount} shards arrived`);
      const result = this.store.commit(uploadId, spec, plan, header.kind, client, this.feePercent, (jobId) => {
        if (held) this.lightning?.book(jobId, spec, client);
        this.payments?.lock(jobId, client, spec);
      });
      if (result.created) log.info("job accepted", { job: result.jobId, client, shards: plan.shardCount });
      this.coordinator.kick();
      return result;
    } catch (err) {
      this.store.discardUpload(uploadId);
      throw err;
    }
  }

  async *watch(jobId: string, client: string, signal: AbortSignal): AsyncGenerator<JobEvent> {
    this.store.owned(jobId, client);
    let last: { key: string; shards: Uint8Array } | undefined;
    for (;;) {
      throwIfAborted(signal);
      const job = this.summary(jobId);
      const shards = this.store.shardStates(jobId, SHARD_CODES);
      const key = JSON.stringify(job);
      if (!last || last.key !== key || !sameBytes(last.shards, shards)) {
        last = { key, shards };
        yield { type: "progress", job, shards };
      }
      const output = this.store.output(jobId);
      if (job.state === "failed" || (job.state === "verified" && (output || job.error))) {
        yield {
          type: "finished",
          job,
          ...(output ? { output: { bytes: output.bytes, sha256: output.sha256, records: output.records } } : {}),
        };
        return;
      }
      await this.changed(jobId, signal);
    }
  }

  async output(jobId: string, client: string): Promise<OutputInfo> {
    this.store.owned(jobId, client);
    const output = this.store.output(jobId);
    if (!output) {
      throw new InvalidInputError(`job ${jobId} is ${this.store.jobs.job(jobId).state}; its output is not ready`);
    }
    return output;
  }

  report(jobId: string, client: string): JobReport {
    this.store.owned(jobId, client);
    return this.store.report(jobId);
  }

  /** Copies in flight by provider (status display, tests). */
  inFlight(): Map<string, number> {
    return this.coordinator.inFlight();
  }

  private summary(jobId: string): JobSummary {
    const job = this.store.jobs.job(jobId);
    const progress = this.store.jobs.progress(jobId);
    const error = job.error ?? this.mergeErrors.get(jobId);
    return {
      id: job.id,
      state: job.state,
      shardCount: job.shardCount,
      shardsReturned: job.shardsReturned,
      shardsVerified: job.shardsVerified,
      retries: progress.retries,
      ...(error ? { error } : {}),
      ...(this.coordinator.late.has(jobId) ? { late: true } : {}),
    };
  }

  private merge(jobId: string): void {
    if (this.merging.has(jobId)) return;
    const started = performance.now();
    const work = mergeJob(this.store, this.init.home, jobId)
      .then((out) => log.info("job merged", { job: jobId, records: out.records, ms: performance.now() - started }))
      .catch((err: unknown) => {
        this.mergeErrors.set(jobId, `merging the results failed: ${errorMessage(err)}`);
        log.error("job merge failed", { job: jobId, err: errorMessage(err) });
      })
      .finally(() => {
        this.merging.delete(jobId);
        this.touch(jobId);
      });
    this.merging.set(jobId, work);
  }

  private touch(jobId: string): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    this.waiters.delete(jobId);
    for (const wake of set) wake();
  }

  /**
   * Resolves when the job is touched, after `WATCH_POLL_MS` at the latest, but not before
   * `PROGRESS_INTERVAL_MS`. The wake-up is registered first, so a change during the throttle pause
   * (a merge finishing, say) is not missed.
   */
  private async changed(jobId: string, signal: AbortSignal): Promise<void> {
    const woken = new Promise<void>((resolve) => {
      const set = this.waiters.get(jobId) ?? new Set();
      this.waiters.set(jobId, set);
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        set.delete(done);
        resolve();
      };
      const timer = setTimeout(done, WATCH_POLL_MS);
      signal.addEventListener("abort", done, { once: true });
      set.add(done);
    });
    await Bun.sleep(PROGRESS_INTERVAL_MS);
    throwIfAborted(signal);
    await woken;
  }
}

/** The client's plan, checked against the spec and the split rules (the aggregator trusts no count). */
function checkPlan(header: JobUploadHeader): JobUploadHeader["plan"] {
  const { plan, spec } = header;
  const expected = planShards(plan.records, {
    ...(spec.shardCount !== undefined ? { shardCount: spec.shardCount } : { shardSize: plan.shardSize }),
  });
  if (expected.shardSize !== plan.shardSize || expected.shardCount !== plan.shardCount) {
    throw new InvalidInputError(
      `a plan of ${plan.shardCount} shards of ${plan.shardSize} for ${plan.records} records is not a valid split`,
    );
  }
  if (spec.shardSize !== undefined && spec.shardSize !== plan.shardSize) {
    throw new InvalidInputError(`the spec asks for shards of ${spec.shardSize}, the plan has ${plan.shardSize}`);
  }
  const kinds: Record<string, string> = { prompts: "prompts", idx: "images", images: "images", tensor: "tensor" };
  const wanted = kinds[spec.input.kind];
  // An image input read as a .npy array arrives as tensor rows.
  if (wanted !== header.kind && !(wanted === "images" && header.kind === "tensor")) {
    throw new InvalidInputError(`a ${spec.input.kind} input cannot arrive as ${header.kind} shards`);
  }
  return expected;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
