import { type ProviderStats, score } from "../reputation/score.ts";
import type { ReputationStore } from "../reputation/store.ts";
import type { LocalReputation } from "./select.ts";

/**
 * What this node has seen of other peers itself (its `ReputationStore`: an aggregator records every
 * copy, probe and fault; any node records bans it adopts), in the shapes `rankProviders` and
 * `infernet peers` take. Unlike a capability record's `reputation`, which the peer signs about
 * itself, this is first-hand.
 */

/**
 * Whether the stats hold anything observed: a copy, a fault, a loss or an uptime probe. A row with
 * only the announced speed says nothing yet, and its score (every factor starts at 1) would rank a
 * stranger as a perfect provider.
 */
export function hasRecord(stats: ProviderStats): boolean {
  return stats.verified + stats.faulty + stats.lost + stats.returned + stats.seen + stats.missed > 0;
}

/** The `SelectionCriteria.reputation` lookup backed by this node's store. */
export function localReputation(
  reputation: ReputationStore,
  now: () => number = Date.now,
): (peerId: string, sha256: string) => LocalReputation {
  return (peerId, sha256) => {
    const banned = reputation.banned(peerId, now()) !== undefined;
    const stats = reputation.stats(peerId, sha256);
    return { score: score(stats, banned), banned, known: hasRecord(stats) };
  };
}
