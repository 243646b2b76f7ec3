import type { CapabilityRecord } from "../node/protocols/capability/messages.ts";
import { DEFAULT_TOKENS_PER_SECOND } from "../node/select.ts";
import {
  checkDeadline,
  DeadlineTooShortError,
  eligibleProviders,
  expectedFinishMs,
  expectedShardMs,
  type JobTerms,
  MAX_IN_FLIGHT_PER_PROVIDER,
  ModelNotServedError,
  measuredSpeeds,
  type PlanCopy,
  PriceTooLowError,
  type ShardWork,
  WINDOW_TARGET_MS,
  windowFor,
} from "./feasibility.ts";

/**
 * The aggregator's planner: given every unfinished job's shards and copies, the providers' capability
 * records and the time, which copies to lease to whom now. Pure and deterministic (the same input
 * gives the same plan), so it is tested without a network and a restarted aggregator plans the same.
 *
 * ```ts
 * checkSchedulable(snapshotJob(jobs, id), records, now);        // at submission: a typed refusal
 * jobs.expireLeases(now);                                        // then, every tick:
 * const plan = planAssignments({ jobs: jobs.unfinishedJobs().map((j) => snapshotJob(jobs, j.id)) }, records, now);
 * for (const r of plan.refused) { jobs.failJob(r.jobId, r.error.message); tell(r.jobId, r.error); }
 * for (const l of plan.late) warn(l.jobId, l.expectedFinishMs);
 * for (const l of plan.leases) {
 *   send(l.speculative ? jobs.leaseExtra(l.shardId, l.provider, l.leaseMs, MAX_SPECULATIVE_COPIES)
 *                      : jobs.lease(l.shardId, l.provider, l.leaseMs));
 * }
 * ```
 *
 * Providers are the verified capability records (`rankProviders` filters them); copies go to the
 * provider expected to finish them first within its in-flight window (`windowFor`), speeds are
 * measured from returned copies (`measuredSpeeds`) before they are taken from the announcement.
 * With `score`, that expected finish is divided by the provider's reputation (`schedulingWeight`).
 */

/**
 * Speculation starts when every shard has all its copies placed and at most this fraction of a
 * job's shards is unverified (a lost provider's whole window is then redone before its leases expire)...
 */
export const SPECULATE_FRACTION = 0.1;
/** ...or at most this many, whichever is more. */
export const SPECULATE_MIN_SHARDS = 2;
/** A copy in flight this many times longer than expected is slow: it may get a speculative twin. */
export const SLOW_FACTOR = 2;
/** Extra copies a shard may have in flight beyond its redundancy. */
export const MAX_SPECULATIVE_COPIES = 1;
/** A lease lasts this many times the copy's expected finish, so a busy provider is not cut off. */
export const LEASE_SLACK = 3;
/** Shortest lease handed out (covers connection set-up and a slow first token). */
export const MIN_LEASE_MS = 5_000;
/**
 * Lowest score the planner divides by: a provider at or below it competes as if it were ten times
 * slower. Without a floor a score near 0 would make its copies infinitely late (and ties undecidable)
 * when it may be the only provider with room; banned providers are left out through `exclude`.
 */
export const MIN_SCHEDULING_SCORE = 0.1;

export interface PlanShard {
  id: number;
  index: number;
  /** Records in the shard. */
  count: number;
  /** Verified (or failed) shards need nothing more. */
  done: boolean;
  /** Copies still to lease before the shard has `redundancy` of them. */
  missing: number;
  /** Live copies: leased, running, returned or verified. */
  copies: readonly PlanCopy[];
  /**
   * Providers that must not get this shard again: their copy of it was rejected (a wrong or
   * disagreeing result). A second copy from the same provider is no independent check.
   */
  excluded?: readonly string[];
}

export interface PlanJob extends JobTerms {
  /** Work units per record (tokens for prompts, 1 for tensor records). */
  tokensPerRecord: number;
  /** Shards in input order: all of them, or only the unfinished ones when `shardCount` is given. */
  shards: readonly PlanShard[];
  /** The job's shard count when `shards` leaves out finished shards (a caller planning every tick). */
  shardCount?: number;
  /** Returned copies of shards left out of `shards`, for measured speeds (the most recent suffice). */
  history?: readonly { copy: PlanCopy; work: ShardWork }[];
}

export interface SchedulerState {
  jobs: readonly PlanJob[];
}

export interface PlanOptions {
  /** Peers never to lease to: banned, or failed for this aggregator. */
  exclude?: ReadonlySet<string>;
  /** Work a provider's window holds, ms (default `WINDOW_TARGET_MS`). */
  windowTargetMs?: number;
  /** Most copies one provider holds over all jobs (default `MAX_IN_FLIGHT_PER_PROVIDER`). */
  maxInFlight?: number;
  /**
   * Copies expected to take less than `batch.belowMs` travel in batches (several per stream), so a
   * provider may hold up to `batch.maxInFlight` of them: the stream count, not the copy count, is
   * what its queue limits.
   */
  batch?: { belowMs: number; maxInFlight: number };
  /** Disable speculative duplicates. */
  speculate?: boolean;
  /**
   * The provider's reputation for the job's model in [0, 1] (default 1 for everyone), e.g.
   * `ReputationStore.score`. A copy goes to the provider with the earliest expected finish divided by
   * `schedulingWeight(score)`, so a provider that loses copies, is caught wrong or is slower than it
   * announced gets fewer copies, in proportion to its score; its leases and expected times are not
   * stretched (they follow its speed, not its record). Called once per provider and job.
   */
  score?: (provider: string, modelSha256: string) => number;
}

/** One copy to lease now. */
export interface PlannedLease {
  jobId: string;
  shardId: number;
  shardIndex: number;
  provider: string;
  /** An extra copy beyond the redundancy, because another copy is slow near the end of the job. */
  speculative: boolean;
  /** Expected compute time of this copy on this provider. */
  expectedMs: number;
  /** Suggested lease: the provider's queue ahead of it plus this copy, with slack. */
  leaseMs: number;
}

export type SchedulingError = ModelNotServedError | PriceTooLowError | DeadlineTooShortError;

export interface Plan {
  leases: PlannedLease[];
  /** Jobs that cannot be served: nothing is leased for them; the aggregator fails them with the error. */
  refused: { jobId: string; error: SchedulingError }[];
  /** Running jobs expected to miss their deadline: still planned, the client is warned. */
  late: { jobId: string; expectedFinishMs: number }[];
}

const IN_FLIGHT = new Set<PlanCopy["state"]>(["leased", "running"]);

/** Plans the leases for `now`; see the module comment. */
export function planAssignments(
  state: SchedulerState,
  providers: readonly CapabilityRecord[],
  now: number,
  options: PlanOptions = {},
): Plan {
  const plan: Plan = { leases: [], refused: [], late: [] };
  const jobs = [...state.jobs].sort((a, b) => a.deadlineMs - b.deadlineMs || cmp(a.id, b.id));
  const speeds = measuredSpeeds(
    jobs.flatMap((j) => [
      ...(j.history ?? []),
      ...j.shards.flatMap((s) => s.copies.map((copy) => ({ copy, work: workOf(j, s) }))),
    ]),
  );
  // Copies each provider holds over all jobs (including those planned here), each copy's place in
  // its provider's queue (oldest lease first), and each provider's latest return.
  const load = new Map<string, number>();
  const queues = new Map<string, PlanCopy[]>();
  const lastReturn = new Map<string, number>();
  for (const j of jobs) {
    for (const s of j.shards) {
      for (const c of s.copies) {
        if (c.returnedAt !== undefined)
          lastReturn.set(c.provider, Math.max(lastReturn.get(c.provider) ?? 0, c.returnedAt));
        if (!IN_FLIGHT.has(c.state)) continue;
        load.set(c.provider, (load.get(c.provider) ?? 0) + 1);
        queues.set(c.provider, [...(queues.get(c.provider) ?? []), c]);
      }
    }
  }
  const position = new Map<PlanCopy, number>();
  for (const queue of queues.values()) {
    // A stable sort: equal lease times keep job and shard order.
    for (const [i, c] of [...queue].sort((a, b) => a.leasedAt - b.leasedAt).entries()) position.set(c, i + 1);
  }
  const ctx: Context = { load, speeds, position, lastReturn, now, options, plan };
  for (const job of jobs) {
    let eligible: CapabilityRecord[];
    try {
      eligible = eligibleProviders(job, providers, now, options.exclude);
      checkDeadline(job, finishOf(job, eligible, speeds, now), now);
    } catch (error) {
      if (!isSchedulingError(error)) throw error;
      if (!(error instanceof DeadlineTooShortError && started(job) && now < job.deadlineMs)) {
        plan.refused.push({ jobId: job.id, error });
        continue;
      }
      // Work already done is not thrown away for a deadline that may yet hold: warn, keep going.
      plan.late.push({ jobId: job.id, expectedFinishMs: error.expectedFinishMs });
      eligible = eligibleProviders(job, providers, now, options.exclude);
    }
    planJob(job, eligible, ctx);
  }
  return plan;
}

/**
 * The check an aggregator makes before accepting a job: throws `ModelNotServedError`,
 * `PriceTooLowError` or `DeadlineTooShortError` (the client's words for why not), else returns the
 * expected finish at the providers' announced or measured speeds, and the providers that may take
 * copies, best first.
 */
export function checkSchedulable(
  job: PlanJob,
  providers: readonly CapabilityRecord[],
  now: number,
  options: Pick<PlanOptions, "exclude"> = {},
): { finishMs: number; eligible: CapabilityRecord[] } {
  const eligible = eligibleProviders(job, providers, now, options.exclude);
  const speeds = measuredSpeeds([
    ...(job.history ?? []),
    ...job.shards.flatMap((s) => s.copies.map((copy) => ({ copy, work: workOf(job, s) }))),
  ]);
  const finish = finishOf(job, eligible, speeds, now);
  checkDeadline(job, finish, now);
  return { finishMs: finish, eligible };
}

/** When the job's remaining copies would be done with every eligible provider on it. */
function finishOf(
  job: PlanJob,
  eligible: readonly CapabilityRecord[],
  speeds: ReadonlyMap<string, number>,
  now: number,
): number {
  const remaining = job.shards.reduce(
    (sum, s) => sum + (s.done ? 0 : (s.missing + inFlightCount(s)) * s.count * job.tokensPerRecord),
    0,
  );
  return expectedFinishMs(remaining, eligible, speeds, now);
}

interface Context {
  load: Map<string, number>;
  speeds: ReadonlyMap<string, number>;
  position: ReadonlyMap<PlanCopy, number>;
  lastReturn: ReadonlyMap<string, number>;
  now: number;
  options: PlanOptions;
  plan: Plan;
}

/** What a provider's expected finish is divided by: its score, within [MIN_SCHEDULING_SCORE, 1]. */
export function schedulingWeight(score: number | undefined): number {
  if (score === undefined) return 1;
  if (Number.isNaN(score)) return MIN_SCHEDULING_SCORE;
  return Math.min(1, Math.max(MIN_SCHEDULING_SCORE, score));
}

function planJob(job: PlanJob, ranked: readonly CapabilityRecord[], ctx: Context): void {
  const { load, speeds, options, plan } = ctx;
  const typical = job.shards.find((s) => !s.done) ?? job.shards[0];
  if (!typical) return;
  const weights = new Map(
    ranked.map((p) => [p.peerId, schedulingWeight(options.score?.(p.peerId, job.sha256))] as const),
  );
  const windows = new Map(
    ranked.map((p) => {
      const ms = expectedShardMs(p, workOf(job, typical), speeds.get(p.peerId));
      const batched = options.batch !== undefined && ms < options.batch.belowMs;
      const cap = batched ? options.batch?.maxInFlight : options.maxInFlight;
      return [p.peerId, windowFor(ms, options.windowTargetMs ?? WINDOW_TARGET_MS, cap ?? MAX_IN_FLIGHT_PER_PROVIDER)];
    }),
  );
  // Providers with room left in their window: once none, the rest of the job waits (no scan per shard).
  let free = ranked.filter((p) => (load.get(p.peerId) ?? 0) < (windows.get(p.peerId) as number)).length;
  const place = (shard: PlanShard, holders: Set<string>, speculative: boolean): boolean => {
    // Earliest expected finish, weighed by score, wins (a slow, busy or unreliable provider gets
    // fewer copies); ties go to rank.
    let best: { id: string; finish: number; weighed: number; ms: number } | undefined;
    for (const record of ranked) {
      const id = record.peerId;
      const held = load.get(id) ?? 0;
      if (holders.has(id) || held >= (windows.get(id) as number)) continue;
      const ms = expectedShardMs(record, workOf(job, shard), speeds.get(id));
      const finish = (held + 1) * ms;
      const weighed = finish / (weights.get(id) as number);
      if (!best || weighed < best.weighed) best = { id, finish, weighed, ms };
    }
    if (!best) return false;
    const held = (load.get(best.id) ?? 0) + 1;
    load.set(best.id, held);
    if (held >= (windows.get(best.id) as number)) free--;
    holders.add(best.id);
    plan.leases.push({
      jobId: job.id,
      shardId: shard.id,
      shardIndex: shard.index,
      provider: best.id,
      speculative,
      expectedMs: Math.ceil(best.ms),
      leaseMs: Math.max(MIN_LEASE_MS, Math.ceil(best.finish * LEASE_SLACK)),
    });
    return true;
  };

  const holdersOf = (s: PlanShard) => new Set([...s.copies.map((c) => c.provider), ...(s.excluded ?? [])]);
  for (const shard of job.shards) {
    if (free <= 0) return;
    if (shard.done || shard.missing <= 0) continue;
    const holders = holdersOf(shard);
    for (let k = 0; k < shard.missing; k++) if (!place(shard, holders, false)) break;
  }

  if (options.speculate === false) return;
  const unfinished = job.shards.filter((s) => !s.done);
  const threshold = Math.max(
    SPECULATE_MIN_SHARDS,
    Math.ceil((job.shardCount ?? job.shards.length) * SPECULATE_FRACTION),
  );
  if (unfinished.length === 0 || unfinished.length > threshold) return;
  // First copies come first: an extra copy never takes a slot a shard without its copies could use.
  if (unfinished.some((s) => s.missing > 0)) return;
  const recordOf = new Map(ranked.map((p) => [p.peerId, p]));
  for (const shard of unfinished) {
    if (shard.missing > 0 || shard.copies.length >= job.redundancy + MAX_SPECULATIVE_COPIES) continue;
    if (shard.copies.some((c) => isSlow(c, workOf(job, shard), recordOf.get(c.provider), ctx))) {
      place(shard, holdersOf(shard), true);
    }
  }
}

/**
 * Whether an in-flight copy is overdue. Running: longer than `SLOW_FACTOR` times its expected time.
 * Leased: the provider works through its queue in lease order, so the k-th copy in it should be back
 * `k` shard times after its lease or the provider's latest return, whichever is later; overdue past
 * `SLOW_FACTOR` times that. A provider whose record is gone is judged at the default speed.
 */
function isSlow(copy: PlanCopy, work: ShardWork, record: CapabilityRecord | undefined, ctx: Context): boolean {
  if (!IN_FLIGHT.has(copy.state)) return false;
  const measured = ctx.speeds.get(copy.provider);
  const ms = record
    ? expectedShardMs(record, work, measured)
    : work.count * work.tokensPerRecord * (measured ?? 1000 / DEFAULT_TOKENS_PER_SECOND);
  if (copy.startedAt !== undefined) return ctx.now - copy.startedAt > SLOW_FACTOR * ms;
  const since = Math.max(copy.leasedAt, ctx.lastReturn.get(copy.provider) ?? 0);
  return ctx.now - since > SLOW_FACTOR * ms * (ctx.position.get(copy) ?? 1);
}

function isSchedulingError(e: unknown): e is SchedulingError {
  return e instanceof ModelNotServedError || e instanceof PriceTooLowError || e instanceof DeadlineTooShortError;
}

const workOf = (job: PlanJob, shard: PlanShard): ShardWork => ({
  count: shard.count,
  tokensPerRecord: job.tokensPerRecord,
});
const inFlightCount = (s: PlanShard) => s.copies.filter((c) => IN_FLIGHT.has(c.state)).length;
const started = (job: PlanJob) =>
  (job.shardCount ?? job.shards.length) > job.shards.length || job.shards.some((s) => s.done || s.copies.length > 0);
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
