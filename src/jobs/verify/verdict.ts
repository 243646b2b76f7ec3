/**
 * How one copy was checked and what came of it, stored with the copy (assignments.verification)
 * and shown by `infernet job`. A copy can pass several checks (its canaries, then agreement with
 * another copy); `method` names the one that decided.
 *
 * - agreement: another provider's copy gave the same answer (within the model's tolerance);
 * - canary: the known-answer records mixed into the shard came back right (or, rejected, wrong);
 * - re-score: the aggregator replayed the text through the model and every token was plausible;
 * - majority: it disagreed with the others and a tie-breaking copy sided against it;
 * - spot-check: a trusted provider's single copy, accepted on its canaries (adaptive replication).
 */
export type VerificationMethod = "agreement" | "canary" | "re-score" | "majority" | "spot-check";

export interface Verification {
  method: VerificationMethod;
  verdict: "accepted" | "rejected";
  /** One line: what was compared and what was found. */
  detail: string;
  /** Canary records the copy carried, and how many came back right. */
  canaries?: { total: number; right: number };
  /** Evidence of the fault, for a rejected copy (reputation/evidence.ts). */
  evidenceId?: string;
}
