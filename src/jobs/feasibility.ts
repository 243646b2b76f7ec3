import { type CapabilityRecord, unitPriceMsat } from "../node/protocols/capability/messages.ts";
import { DEFAULT_TOKENS_PER_SECOND, rankProviders } from "../node/select.ts";
import { NoProviderError, TimeoutError } from "../util/errors.ts";

/**
 * The scheduler's arithmetic: how long a shard takes on a provider, how many copies a provider may
 * hold at once, which providers may take a job at all, and whether the job can end before its
 * deadline. Pure functions of plain data, so the planner and the submission check agree.
 */

/** Work units a prompt record costs when the job's params name no `maxTokens`. */
export const DEFAULT_PROMPT_TOKENS = 256;
/** Work units one ONNX record (an image, a tensor row) costs: priced and timed as one token. */
export const TOKENS_PER_TENSOR_RECORD = 1;
/** A provider's in-flight window holds about this much work, so a fast one gets more shards. */
export const WINDOW_TARGET_MS = 10_000;
/** Copies one provider holds at once, over all jobs, however fast it is. */
export const MAX_IN_FLIGHT_PER_PROVIDER = 16;
/** Every provider may hold at least this many copies, however slow it is. */
export const MIN_IN_FLIGHT_PER_PROVIDER = 1;
/** Returned copies per provider that its measured speed is taken from (the most recent). */
export const MAX_SPEED_SAMPLES = 32;

/** Nobody on the network serves the job's model, or fewer distinct providers than its redundancy. */
export class ModelNotServedError extends NoProviderError {}

/** Providers serve the model, but none within the job's maximum price. */
export class PriceTooLowError extends NoProviderError {
  constructor(
    message: string,
    /** Smallest `maxPriceMsat` that at least `redundancy` providers would accept. */
    readonly neededMsat: number,
    options: { hint?: string } = {},
  ) {
    super(message, options);
  }
}

/** The job cannot finish before its deadline at the providers' measured speeds (a timeout foreseen). */
export class DeadlineTooShortError extends TimeoutError {
  constructor(
    message: string,
    /** When the job is expected to finish, Unix ms. */
    readonly expectedFinishMs: number,
    options: { hint?: string } = {},
  ) {
    super(message, options);
  }
}

/** What a shard costs: its records and the work units per record. */
export interface ShardWork {
  count: number;
  tokensPerRecord: number;
}

/** One copy as the scheduler sees it: who holds it and its timings. */
export interface PlanCopy {
  provider: string;
  state: "leased" | "running" | "returned" | "verified";
  leasedAt: number;
  startedAt?: number;
  returnedAt?: number;
}

/**
 * Expected milliseconds for one copy of `shard` on the provider: its measured milliseconds per
 * work unit when known, else its published self-benchmark (`tokensPerSecond`), else
 * `DEFAULT_TOKENS_PER_SECOND`.
 */
export function expectedShardMs(record: CapabilityRecord, shard: ShardWork, measuredMsPerToken?: number): number {
  const msPerToken = measuredMsPerToken ?? 1000 / (record.hardware.tokensPerSecond || DEFAULT_TOKENS_PER_SECOND);
  return shard.count * shard.tokensPerRecord * msPerToken;
}

/** Copies a provider may hold at once: about `WINDOW_TARGET_MS` of work, within the bounds. */
export function windowFor(shardMs: number, targetMs = WINDOW_TARGET_MS, max = MAX_IN_FLIGHT_PER_PROVIDER): number {
  const fit = shardMs > 0 ? Math.floor(targetMs / shardMs) : max;
  return Math.max(MIN_IN_FLIGHT_PER_PROVIDER, Math.min(max, fit));
}

/**
 * Milliseconds per work unit each provider has shown, from its returned copies: the busy time of
 * each copy (from its lease, or the provider's previous return if later, to its return) over the
 * work it held, so copies waiting in a window do not count as slow.
 */
export function measuredSpeeds(
  copies: readonly { copy: PlanCopy; work: ShardWork }[],
  maxSamples = MAX_SPEED_SAMPLES,
): Map<string, number> {
  const byProvider = new Map<string, { copy: PlanCopy; work: ShardWork }[]>();
  for (const c of copies) {
    if (c.copy.returnedAt === undefined) continue;
    const list = byProvider.get(c.copy.provider) ?? [];
    list.push(c);
    byProvider.set(c.copy.provider, list);
  }
  const speeds = new Map<string, number>();
  for (const [provider, list] of byProvider) {
    list.sort((a, b) => (a.copy.returnedAt as number) - (b.copy.returnedAt as number));
    let previous = Number.NEGATIVE_INFINITY;
    let busy = 0;
    let tokens = 0;
    for (const [i, { copy, work }] of list.entries()) {
      const returnedAt = copy.returnedAt as number;
      if (i >= list.length - maxSamples) {
        busy += Math.max(0, returnedAt - Math.max(copy.leasedAt, previous));
        tokens += work.count * work.tokensPerRecord;
      }
      previous = returnedAt;
    }
    // A copy returned in the same millisecond as its lease still took some time.
    if (tokens > 0) speeds.set(provider, Math.max(busy, 1) / tokens);
  }
  return speeds;
}

/** What the feasibility check needs to know about a job. */
export interface JobTerms {
  id: string;
  sha256: string;
  redundancy: number;
  maxPriceMsat: number;
  deadlineMs: number;
  /** Work units of every shard of the job, for the price. */
  totalTokens: number;
}

/**
 * Highest provider price, satoshis per 1,000 work units, that keeps the whole job (every copy of
 * every shard) within `maxPriceMsat`: msat per unit equals sats per 1,000 units.
 */
export function maxUnitPrice(job: JobTerms): number {
  return job.maxPriceMsat / Math.max(1, job.totalTokens * job.redundancy);
}

/**
 * Providers that may take copies of the job, best first (see `rankProviders`): they serve the
 * model, are not excluded, have slots, their record has not expired and their price keeps the job
 * within its maximum. Throws `ModelNotServedError` or `PriceTooLowError` when fewer than
 * `redundancy` such providers exist, since no shard could then get its copies.
 */
export function eligibleProviders(
  job: JobTerms,
  providers: readonly CapabilityRecord[],
  now: number,
  exclude: ReadonlySet<string> = new Set(),
): CapabilityRecord[] {
  const live = providers.filter((p) => p.expiresAt > now);
  const serving = rankProviders(live, { sha256: job.sha256, exclude: new Set(exclude) });
  if (serving.length < job.redundancy) {
    throw new ModelNotServedError(
      serving.length === 0
        ? `no provider serves model ${job.sha256.slice(0, 12)}`
        : `${serving.length} provider(s) serve model ${job.sha256.slice(0, 12)}, redundancy ${job.redundancy} needs ${job.redundancy}`,
      { hint: "choose a model that providers announce, or lower the redundancy" },
    );
  }
  const eligible = rankProviders(live, { sha256: job.sha256, exclude: new Set(exclude), maxPrice: maxUnitPrice(job) });
  if (eligible.length < job.redundancy) {
    const prices = serving.map((p) => unitPriceMsat(p, job.sha256)).sort((a, b) => a - b);
    const price = prices[job.redundancy - 1] as number;
    const neededMsat = Math.ceil(price * job.totalTokens * job.redundancy);
    throw new PriceTooLowError(
      `max price ${job.maxPriceMsat} msat is below what ${job.redundancy} provider(s) ask: ${neededMsat} msat`,
      neededMsat,
      { hint: `raise maxPriceMsat to at least ${neededMsat}` },
    );
  }
  return eligible;
}

/**
 * What the job costs at the prices announced now, msat, before the aggregator's fee: each record's
 * work paid to `redundancy` copies at the prices of the first providers of `eligible` (ranked best
 * first, as the planner takes them), rounded up.
 */
export function estimatedCostMsat(job: JobTerms, eligible: readonly CapabilityRecord[]): number {
  const prices = eligible.slice(0, job.redundancy).map((p) => unitPriceMsat(p, job.sha256));
  return Math.ceil(prices.reduce((sum, price) => sum + price * job.totalTokens, 0));
}

/**
 * When the remaining work would finish if every eligible provider worked on it at its expected
 * speed: `now` plus remaining units over the providers' combined units per millisecond.
 */
export function expectedFinishMs(
  remainingTokens: number,
  eligible: readonly CapabilityRecord[],
  speeds: ReadonlyMap<string, number>,
  now: number,
): number {
  let unitsPerMs = 0;
  for (const p of eligible) {
    unitsPerMs += 1 / expectedShardMs(p, { count: 1, tokensPerRecord: 1 }, speeds.get(p.peerId));
  }
  return now + Math.ceil(remainingTokens / unitsPerMs);
}

/** Throws `DeadlineTooShortError` when `finishMs` is past the job's deadline. */
export function checkDeadline(job: JobTerms, finishMs: number, now: number): void {
  if (finishMs <= job.deadlineMs) return;
  const late = now >= job.deadlineMs ? "its deadline has passed" : `it would end ${finishMs - job.deadlineMs} ms late`;
  throw new DeadlineTooShortError(`job ${job.id} cannot finish in time: ${late}`, finishMs, {
    hint: `set a deadline of at least ${Math.ceil((finishMs - now) / 1000)} s from now, or use smaller shards`,
  });
}
