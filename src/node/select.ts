import { type CapabilityRecord, unitPriceMsat } from "./protocols/capability/messages.ts";

/**
 * Provider choice for a direct job: among peers that serve the model at an acceptable price and are
 * not banned here, the one expected to answer first, then the best reputation (`rankingReputation`).
 * Pure and deterministic, so a client retrying after a failure walks the same list minus the peers
 * it excludes.
 */

/** Round-trip time assumed for a peer we have never measured: worse than a LAN, better than nothing. */
export const UNKNOWN_RTT_MS = 250;
/** Length of the job a queued request waits behind, in tokens (a short chat answer). */
export const TYPICAL_JOB_TOKENS = 256;
/** Generation speed assumed when a provider publishes no self-benchmark. */
export const DEFAULT_TOKENS_PER_SECOND = 20;
/**
 * Expected latencies within the same bucket count as equal, so reputation decides between
 * providers a few milliseconds apart instead of measurement noise.
 */
export const LATENCY_BUCKET_MS = 25;
/**
 * How much a provider's announced reputation counts when this node has no record of its own; the
 * rest is NEUTRAL_REPUTATION. The claim is signed by the provider about itself: attributable, not
 * proven. At 0.5 a perfect claim ranks a stranger 0.75, below any provider whose local record
 * scores higher, and a bad claim (an honest provider admitting failures) still counts against it.
 */
export const CLAIM_WEIGHT = 0.5;
/** What a provider nobody vouches for is assumed to be worth. */
export const NEUTRAL_REPUTATION = 0.5;

/** What this node itself knows of a provider for one model (its ReputationStore). */
export interface LocalReputation {
  /** The local score in [0, 1], 0 while banned; meaningless unless `known`. */
  score: number;
  /** Banned here: never chosen. */
  banned: boolean;
  /** This node has observed the provider serving the model (copies, faults, probes). */
  known: boolean;
}

export interface SelectionCriteria {
  /** File sha256 of the model to run. */
  sha256: string;
  /** Highest acceptable price, satoshis per 1,000 tokens. */
  maxPrice?: number;
  /** Peer ids never to pick (tried already, failed, banned). */
  exclude?: Set<string>;
  /** Measured round-trip time to a peer, undefined when unknown. */
  latencyMs?: (peerId: string) => number | undefined;
  /** This node's own record of a provider for the model (`localReputation`); absent: claims only. */
  reputation?: (peerId: string, sha256: string) => LocalReputation;
}

/** Time a new job waits for a free slot on this provider, from its published load and speed. */
export function queueWaitMs(record: CapabilityRecord): number {
  const { active, queued, maxConcurrent } = record.load;
  if (maxConcurrent <= 0) return Number.POSITIVE_INFINITY;
  const ahead = active + queued - maxConcurrent + 1;
  if (ahead <= 0) return 0;
  const tokensPerSecond = record.hardware.tokensPerSecond || DEFAULT_TOKENS_PER_SECOND;
  const jobMs = (TYPICAL_JOB_TOKENS / tokensPerSecond) * 1000;
  return Math.ceil(ahead / maxConcurrent) * jobMs;
}

/** Round-trip time plus queue wait. */
export function expectedLatencyMs(record: CapabilityRecord, rttMs: number | undefined): number {
  return (rttMs ?? UNKNOWN_RTT_MS) + queueWaitMs(record);
}

/**
 * The reputation a provider claims, in [0, 1]: the published score, or the success rate with one
 * success and one failure assumed up front (Laplace), so a newcomer claims 0.5 and one failure does
 * not sink a long record.
 */
export function reputationScore(record: CapabilityRecord): number {
  const { completed, failed, score } = record.reputation;
  return score ?? (completed + 1) / (completed + failed + 2);
}

/**
 * The reputation a provider is ranked by: this node's own score when it has a record of the
 * provider for the model, else its claim pulled towards a neutral prior,
 * `CLAIM_WEIGHT * claim + (1 - CLAIM_WEIGHT) * NEUTRAL_REPUTATION`. First-hand evidence always
 * replaces the claim, so lying about itself gains a provider nothing once it has been seen.
 */
export function rankingReputation(record: CapabilityRecord, local?: LocalReputation): number {
  if (local?.known) return local.score;
  return CLAIM_WEIGHT * reputationScore(record) + (1 - CLAIM_WEIGHT) * NEUTRAL_REPUTATION;
}

interface Scored {
  record: CapabilityRecord;
  latency: number;
  bucket: number;
  reputation: number;
}

/**
 * Best provider first: serves the model, not excluded, not banned, price within `maxPrice`, has
 * slots; then lowest expected latency (in LATENCY_BUCKET_MS buckets), best `rankingReputation`,
 * lowest exact latency, and peer id. Keeps one record per peer (the highest seq).
 */
export function rankProviders(records: CapabilityRecord[], criteria: SelectionCriteria): CapabilityRecord[] {
  const newest = new Map<string, CapabilityRecord>();
  for (const r of records) {
    const known = newest.get(r.peerId);
    if (!known || r.seq > known.seq) newest.set(r.peerId, r);
  }
  const scored: Scored[] = [];
  for (const record of newest.values()) {
    if (criteria.exclude?.has(record.peerId)) continue;
    if (!record.models.some((m) => m.sha256 === criteria.sha256)) continue;
    if (criteria.maxPrice !== undefined && unitPriceMsat(record, criteria.sha256) > criteria.maxPrice) continue;
    if (record.load.maxConcurrent <= 0) continue;
    const local = criteria.reputation?.(record.peerId, criteria.sha256);
    if (local?.banned) continue;
    const latency = expectedLatencyMs(record, criteria.latencyMs?.(record.peerId));
    scored.push({
      record,
      latency,
      bucket: Math.floor(latency / LATENCY_BUCKET_MS),
      reputation: rankingReputation(record, local),
    });
  }
  scored.sort(
    (a, b) =>
      a.bucket - b.bucket ||
      b.reputation - a.reputation ||
      a.latency - b.latency ||
      (a.record.peerId < b.record.peerId ? -1 : a.record.peerId > b.record.peerId ? 1 : 0),
  );
  return scored.map((s) => s.record);
}
