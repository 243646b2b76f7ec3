import type { JobStore } from "../../jobs/job-store.ts";
import type { ShardRecord } from "../../jobs/rows.ts";

/**
 * Deciding a shard from its copies' results (their sha256 digests; see results.ts). A result that
 * `redundancy` copies agree on is accepted (`verifyShard`: those copies become verified, the rest
 * failed). When every copy is back and none has enough votes, the newest copy is rejected so one
 * more provider computes the shard as a tie-breaker; copies rejected this way still vote, so a
 * third copy that agrees with either side settles it. A shard that keeps disagreeing runs into the
 * store's retry limit and fails the job rather than guessing.
 *
 * The verification issue extends this (canaries, re-scoring, reputation); here agreement is exact.
 */

/** The reason a copy is rejected for disagreeing with the others (it keeps its vote). */
export const DISAGREEMENT = "results disagree";

export type Settlement =
  | { outcome: "verified"; shard: ShardRecord; sha256: string }
  | { outcome: "tie-break"; rejected: string }
  | { outcome: "waiting" };

export function settleShard(jobs: JobStore, shardId: number, redundancy: number): Settlement {
  const shard = jobs.shard(shardId);
  if (shard.state === "verified" || shard.state === "failed") return { outcome: "waiting" };
  const copies = jobs.assignments(shardId);
  const votes = new Map<string, number>();
  for (const c of copies) {
    const counts = c.state === "returned" || (c.state === "failed" && c.reason === DISAGREEMENT);
    if (counts && c.resultSha256) votes.set(c.resultSha256, (votes.get(c.resultSha256) ?? 0) + 1);
  }
  const returned = copies.filter((c) => c.state === "returned");
  // The result with the most votes that a returned copy holds (verifyShard needs one).
  let best: { sha256: string; votes: number } | undefined;
  for (const c of returned) {
    const n = votes.get(c.resultSha256 as string) ?? 0;
    if (!best || n > best.votes) best = { sha256: c.resultSha256 as string, votes: n };
  }
  if (best && best.votes >= redundancy) {
    return { outcome: "verified", shard: jobs.verifyShard(shardId, best.sha256), sha256: best.sha256 };
  }
  const inFlight = copies.some((c) => c.state === "leased" || c.state === "running");
  if (returned.length >= redundancy && !inFlight) {
    const newest = returned.reduce((a, b) => ((b.returnedAt ?? 0) >= (a.returnedAt ?? 0) ? b : a));
    jobs.reject(newest.id, DISAGREEMENT);
    return { outcome: "tie-break", rejected: newest.id };
  }
  return { outcome: "waiting" };
}
