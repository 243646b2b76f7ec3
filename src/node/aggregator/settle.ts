import type { JobStore } from "../../jobs/job-store.ts";
import type { ShardResult } from "../../jobs/records.ts";
import type { AssignmentRecord, ShardRecord } from "../../jobs/rows.ts";
import { compareResults, DEFAULT_TOLERANCE, type Tolerance } from "../../jobs/verify/compare.ts";
import { resultFromBytes } from "./results.ts";
import { rescoredOk } from "./text-review.ts";

/**
 * Deciding a shard from its copies' results. Copies are grouped by answer: the same digest (see
 * results.ts), or results the verifier counts as the same (jobs/verify/compare.ts: tensors within
 * the model's tolerance, classifiers with the same top class). An answer that as many providers as
 * the shard needs (its target: the job's redundancy, or fewer under adaptive replication) agree on
 * is accepted (`verifyShard`: those copies become verified, the rest failed and reported back as
 * `rejected`, with the records on which they differ). When every copy is back and no answer has
 * enough votes, the newest copy is disputed (it keeps its result and its vote) so one more
 * provider computes the shard as a tie-breaker; a third copy that agrees with either side settles
 * it. Votes are counted per provider, and a provider whose copy was rejected or disputed never gets
 * the shard again (the planner and the store see to that), so no provider can outvote another with
 * copies of its own. A shard that keeps disagreeing runs into the store's retry limit and fails the
 * job rather than guessing. Canaries are checked before a copy gets here (canaries.ts): a copy that
 * got one wrong never votes.
 */

/** The reason a copy is disputed for disagreeing with the others (it keeps its vote). */
export const DISAGREEMENT = "results disagree";

/** A copy on the losing side, and where it differs from the accepted answer. */
export interface Outvoted {
  copy: AssignmentRecord;
  /** Record positions (in the shard) that differ, or "all" when the result is not comparable. */
  records: number[] | "all";
  reason: string;
}

/** An answer with enough votes, before its shard is marked verified. */
export interface Decision {
  shard: ShardRecord;
  sha256: string;
  /** Copies whose answer was accepted, and how many providers agreed on it. */
  accepted: AssignmentRecord[];
  voters: number;
  outvoted: Outvoted[];
}

export type Settlement =
  | (Decision & { outcome: "verified" })
  | { outcome: "tie-break"; disputed: string }
  | { outcome: "waiting" };

interface Answer {
  sha256: string;
  result: ShardResult | undefined;
  shas: Set<string>;
  copies: AssignmentRecord[];
  providers: Set<string>;
}

/**
 * Settles a shard if its copies allow. `judge` sees a decision before the shard is marked verified:
 * a loser convicted there (its provider banned, its other copies disowned) is out before this shard
 * can complete the job, so its other shards of the job are reopened, not merged.
 */
export function settleShard(
  jobs: JobStore,
  shardId: number,
  tolerance: Tolerance = DEFAULT_TOLERANCE,
  judge: (decision: Decision) => void = () => {},
): Settlement {
  const shard = jobs.shard(shardId);
  if (shard.state === "verified" || shard.state === "failed") return { outcome: "waiting" };
  const copies = jobs.assignments(shardId);
  const held = copies.filter((c) => (c.state === "returned" || c.state === "disputed") && c.resultSha256);
  const answers = groupAnswers(jobs, held, tolerance);
  const target = jobs.targetCopies(shardId);
  // The answer with the most providers behind it (the first returned wins a tie).
  const best = answers.reduce<Answer | undefined>(
    (a, b) => (!a || b.providers.size > a.providers.size ? b : a),
    undefined,
  );
  if (best && best.providers.size >= target) {
    const others = [...best.shas].filter((s) => s !== best.sha256);
    const outvoted = answers
      .filter((a) => a !== best)
      .flatMap((a) => {
        const diff = best.result && a.result ? compareResults(a.result, best.result, tolerance) : undefined;
        const records = !diff || diff.same ? ("all" as const) : diff.records;
        const reason = diff && !diff.same && diff.records === "all" ? diff.reason : "differs from the accepted answer";
        return a.copies.map((copy) => ({ copy, records, reason }));
      });
    const decision = { shard, sha256: best.sha256, accepted: best.copies, voters: best.providers.size, outvoted };
    judge(decision);
    return { ...decision, outcome: "verified", shard: jobs.verifyShard(shardId, best.sha256, others) };
  }
  const returned = copies.filter((c) => c.state === "returned");
  const inFlight = copies.some((c) => c.state === "leased" || c.state === "running");
  if (returned.length >= target && !inFlight && answers.length > 1) {
    const newest = returned.reduce((a, b) => ((b.returnedAt ?? 0) >= (a.returnedAt ?? 0) ? b : a));
    jobs.dispute(newest.id, DISAGREEMENT);
    return { outcome: "tie-break", disputed: newest.id };
  }
  return { outcome: "waiting" };
}

/** Copies grouped by answer, in the order their first copy returned. */
function groupAnswers(jobs: JobStore, held: AssignmentRecord[], tolerance: Tolerance): Answer[] {
  const answers: Answer[] = [];
  const decoded = new Map<string, ShardResult | undefined>();
  const decode = (c: AssignmentRecord): ShardResult | undefined => {
    const sha = c.resultSha256 as string;
    if (!decoded.has(sha)) {
      const stored = jobs.result(c.id);
      decoded.set(sha, stored && "bytes" in stored ? resultFromBytes(stored.bytes, []) : undefined);
    }
    return decoded.get(sha);
  };
  const ordered = [...held].sort((a, b) => (a.returnedAt ?? 0) - (b.returnedAt ?? 0));
  for (const c of ordered) {
    const sha = c.resultSha256 as string;
    let answer = answers.find((a) => a.shas.has(sha));
    if (!answer && answers.length > 0) {
      const result = decode(c);
      answer = answers.find((a) => {
        // Texts that differ but both passed re-scoring are both honest: one answer (text-review.ts).
        if (rescoredOk(c) && a.copies.some(rescoredOk)) return true;
        const theirs = decode(a.copies[0] as AssignmentRecord);
        return result !== undefined && theirs !== undefined && compareResults(result, theirs, tolerance).same;
      });
    }
    if (!answer) {
      answer = { sha256: sha, result: undefined, shas: new Set(), copies: [], providers: new Set() };
      answers.push(answer);
    }
    answer.shas.add(sha);
    answer.copies.push(c);
    answer.providers.add(c.provider);
  }
  // The representatives' results, for the diff against the losers (cached: each is decoded once).
  if (answers.length > 1) for (const a of answers) a.result = decode(a.copies[0] as AssignmentRecord);
  return answers;
}
