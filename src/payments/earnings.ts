/**
 * What a verified copy earns of its price: the price (its usage at the provider's announced price,
 * payments/pricing.ts) times two multipliers, in basis points, never above 1, so a job never costs
 * its client more than its quote and the part a copy did not earn goes back to the client:
 *
 *   speed      = max(SPEED_FLOOR, fastest / this)      wall time from lease to return, against the
 *                                                      fastest verified copy of the same shard
 *                                                      (1 for a shard's only copy, or the fastest)
 *   reputation = REPUTATION_FLOOR + (1 - REPUTATION_FLOOR) * score
 *                                                      the aggregator's own score of the provider
 *                                                      for the model (reputation/score.ts; 1 for a
 *                                                      newcomer, which starts at full score)
 *   earned     = floor(price * speed * reputation)     in whole msat, rounded down once
 *
 * So a provider earns by work (its usage), by speed (a slow copy earns down to 80% of the fastest
 * one's rate) and by reputation (a provider that loses copies or falls short of its announced
 * speed earns down to 90%). Cheating earns nothing at all: a convicted provider's copies are
 * clawed back and its bond forfeited (payments/escrow.ts).
 */

export const FULL_BPS = 10_000;
/** A copy slower than the shard's fastest earns no less than this share of its price. */
export const SPEED_FLOOR_BPS = 8_000;
/** A provider with a score of 0 (not banned) earns this share of its price. */
export const REPUTATION_FLOOR_BPS = 9_000;

/** The speed multiplier, basis points: fastest over this copy's wall time, floored. */
export function speedBps(wallMs: number, fastestWallMs: number): number {
  if (!(wallMs > 0) || !(fastestWallMs > 0) || fastestWallMs >= wallMs) return FULL_BPS;
  return Math.max(SPEED_FLOOR_BPS, Math.floor((FULL_BPS * fastestWallMs) / wallMs));
}

/** The reputation multiplier, basis points, from a score in [0, 1]. */
export function reputationBps(score: number): number {
  const s = Number.isFinite(score) ? Math.min(1, Math.max(0, score)) : 1;
  return REPUTATION_FLOOR_BPS + Math.floor((FULL_BPS - REPUTATION_FLOOR_BPS) * s);
}

/** Both multipliers together, basis points (rounded down). */
export function earningsBps(copy: { wallMs: number; fastestWallMs: number; score: number }): number {
  return Math.floor((speedBps(copy.wallMs, copy.fastestWallMs) * reputationBps(copy.score)) / FULL_BPS);
}
