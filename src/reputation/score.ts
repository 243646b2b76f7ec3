/**
 * A provider's reputation for one model, as one number in [0, 1]. The formula (also in the README):
 *
 *   accuracy   = (verified + 1) / (verified + 1 + FAULT_WEIGHT * faulty)
 *   completion = (returned + 1) / (returned + 1 + lost)
 *   uptime     = (seen + 1) / (seen + 1 + missed)
 *   speed      = min(1, HONEST_SPEED_GAP * delivered / announced)    (1 while either is unknown)
 *   score      = accuracy^2 * completion * uptime * speed            (0 while banned)
 *
 * Every factor starts at 1 (a newcomer is not punished for being new; it earns trust through
 * adaptive replication instead, see `replicationProbability`), and each is a smoothed rate so one
 * event does not swing a long record. A proven fault weighs FAULT_WEIGHT lost copies and accuracy
 * is squared: a wrong answer costs the client more than a late one, which only costs time. Speed
 * is the honest-hardware check: a provider delivering less than 1 / HONEST_SPEED_GAP of the speed
 * it announced loses score in proportion (a modest gap is noise: load, network, small shards).
 */

/** A proven fault counts as this many lost copies. */
export const FAULT_WEIGHT = 10;
/** Delivered speed may fall this many times short of the announced one before the score drops. */
export const HONEST_SPEED_GAP = 3;
/** Work units measured before the speed factor applies (a few small copies say little). */
export const MIN_UNITS_FOR_SPEED = 100;

/**
 * Adaptive replication (after BOINC): a provider with fewer than TRUST_STREAK verified copies in a
 * row gets every shard replicated; after that the chance that its shard is replicated falls as
 * TRUST_STREAK / streak, never below SPOT_CHECK_RATE. Canaries ride along every copy regardless.
 */
export const TRUST_STREAK = 10;
export const SPOT_CHECK_RATE = 0.1;

export interface ProviderStats {
  provider: string;
  modelSha256: string;
  verified: number;
  faulty: number;
  lost: number;
  streak: number;
  returned: number;
  /** Sum of lease-to-return times of returned copies. */
  latencyMs: number;
  /** Work units (tokens or records) of returned copies, and the wall time they took. */
  units: number;
  wallMs: number;
  /** Units per second the provider announced for this kind of work, when it did. */
  announcedUps: number | undefined;
  seen: number;
  missed: number;
  firstSeen: number;
  updatedAt: number;
}

export interface ScoreParts {
  accuracy: number;
  completion: number;
  uptime: number;
  speed: number;
  score: number;
}

/** Units per second delivered, from returned copies' wall time; undefined before enough work. */
export function deliveredUps(stats: ProviderStats): number | undefined {
  if (stats.units < MIN_UNITS_FOR_SPEED || stats.wallMs <= 0) return undefined;
  return stats.units / (stats.wallMs / 1000);
}

export function scoreParts(stats: ProviderStats, banned = false): ScoreParts {
  const accuracy = (stats.verified + 1) / (stats.verified + 1 + FAULT_WEIGHT * stats.faulty);
  const completion = (stats.returned + 1) / (stats.returned + 1 + stats.lost);
  const uptime = (stats.seen + 1) / (stats.seen + 1 + stats.missed);
  const delivered = deliveredUps(stats);
  const announced = stats.announcedUps;
  const speed =
    delivered === undefined || !announced || announced <= 0
      ? 1
      : Math.min(1, (HONEST_SPEED_GAP * delivered) / announced);
  const score = banned ? 0 : accuracy ** 2 * completion * uptime * speed;
  return { accuracy, completion, uptime, speed, score };
}

export function score(stats: ProviderStats, banned = false): number {
  return scoreParts(stats, banned).score;
}

/** The chance that a shard whose first copy goes to a provider with this streak gets replicated. */
export function replicationProbability(streak: number): number {
  if (streak < TRUST_STREAK) return 1;
  return Math.max(SPOT_CHECK_RATE, TRUST_STREAK / streak);
}

/** Stats for a provider never seen before. */
export function freshStats(provider: string, modelSha256: string, now: number): ProviderStats {
  return {
    provider,
    modelSha256,
    verified: 0,
    faulty: 0,
    lost: 0,
    streak: 0,
    returned: 0,
    latencyMs: 0,
    units: 0,
    wallMs: 0,
    announcedUps: undefined,
    seen: 0,
    missed: 0,
    firstSeen: now,
    updatedAt: now,
  };
}
