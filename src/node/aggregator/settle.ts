import type { JobStore } from "../../jobs/job-store.ts";
import type { ShardRecord } from "../../jobs/rows.ts";

/**
 * Deciding a shard from its copies' results (their sha256 digests; see results.ts). A result that
 * `redundancy` copies agree on is accepted (`verifyShard`: those copies become verified, the rest
 * failed). When every copy is back and none has enough votes, the newest copy is disputed (it keeps
 * its result and its vote) so one more provider computes the shard as a tie-breaker; a third copy
 * that agrees with either side settles it, and every copy on the winning side is verified (and
 * paid). Votes are counted per provider, and a provider whose copy was rejected or disputed never
 * gets the shard again (the planner and the store see to that), so no
 * provider can outvote another with copies of its own. A shard that keeps disagreeing runs into the
 * store's retry limit and fails the job rather than guessing.
 *
 * The verification issue extends this (canaries, re-scoring, reputation); here agreement is exact.
 */

/** The reason a copy is disputed for disagreeing with the others (it keeps its vote). */
export const DISAGREEMENT = "results disagree";

export type Settlement =
  | { outcome: "verified"; shard: ShardRecord; sha256: string }
  | { outcome: "tie-break"; disputed: string }
  | { outcome: "waiting" };

export function settleShard(jobs: JobStore, shardId: number, redundancy: number): Settlement {
  const shard = jobs.shard(shardId);
  if (shard.state === "verified" || shard.state === "failed") return { outcome: "waiting" };
  const copies = jobs.assignments(shardId);
  // One vote per provider and result: a provider's second copy of the same result is no second opinion.
  const voters = new Map<string, Set<string>>();
  for (const c of copies) {
    const counts = c.state === "returned" || c.state === "disputed";
    if (!counts || !c.resultSha256) continue;
    const set = voters.get(c.resultSha256) ?? new Set();
    set.add(c.provider);
    voters.set(c.resultSha256, set);
  }
  const votes = new Map([...voters].map(([sha, set]) => [sha, set.size]));
  const returned = copies.filter((c) => c.state === "returned");
  // The result with the most votes (verifyShard needs a returned or disputed copy holding it).
  let best: { sha256: string; votes: number } | undefined;
  for (const c of copies.filter((c) => c.state === "returned" || c.state === "disputed")) {
    const n = votes.get(c.resultSha256 as string) ?? 0;
    if (!best || n > best.votes) best = { sha256: c.resultSha256 as string, votes: n };
  }
  if (best && best.votes >= redundancy) {
    return { outcome: "verified", shard: jobs.verifyShard(shardId, best.sha256), sha256: best.sha256 };
  }
  const inFlight = copies.some((c) => c.state === "leased" || c.state === "running");
  if (returned.length >= redundancy && !inFlight) {
    const newest = returned.reduce((a, b) => ((b.returnedAt ?? 0) >= (a.returnedAt ?? 0) ? b : a));
    jobs.dispute(newest.id, DISAGREEMENT);
    return { outcome: "tie-break", disputed: newest.id };
  }
  return { outcome: "waiting" };
}
