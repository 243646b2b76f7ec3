import type { AssignmentRecord, JobRecord } from "../../jobs/rows.ts";
import type { Verification } from "../../jobs/verify/verdict.ts";
import { errorMessage } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import type { CanarySupply } from "./canary-supply.ts";
import type { BatchEvent } from "./network.ts";
import { resultBytes } from "./results.ts";
import type { ReturnedCopies } from "./returned-copies.ts";
import type { TextReview, TextVerdict } from "./text-review.ts";
import type { Trust } from "./trust.ts";

/**
 * What happens to a copy that came back, before it may vote: its record count and canaries are
 * checked (trust.ts), a text is re-scored where it differs from the copies before it
 * (text-review.ts), and only then is it stored and its shard settled (returned-copies.ts). A copy
 * caught wrong on the way is convicted instead: rejected, its provider banned with evidence.
 */
const log = logger("aggregator");

export interface IntakeInit {
  trust: Trust;
  returned: ReturnedCopies;
  review: TextReview;
  /** Whether this node can re-score texts (it has the model and a llama engine). */
  rescores: boolean;
  signal: AbortSignal;
  onConvicted: (provider: string) => void;
}

export type IntakeOutcome = "stored" | "convicted";

export class Intake {
  constructor(private readonly init: IntakeInit) {}

  async take(
    a: AssignmentRecord,
    job: JobRecord,
    event: Extract<BatchEvent, { type: "done" }>,
    sent: ReturnType<CanarySupply["mix"]>,
  ): Promise<IntakeOutcome> {
    const { trust } = this.init;
    const inspection = trust.inspect(event.result, sent.shard, sent.mix, trust.tolerance(job));
    if (!inspection.ok) return this.convict(a, job, inspection.fault, event.shard);
    const { result, canaries, unsure } = inspection;
    const store = async (verification?: Verification): Promise<IntakeOutcome> => {
      const copy = { assignment: a, job, bytes: resultBytes(result), usage: event.usage, canaries };
      await this.init.returned.add(verification ? { ...copy, verification } : copy);
      return "stored";
    };
    if (result.kind !== "text" || !this.init.rescores) return store();
    const { review } = this.init;
    return review.inTurn(a.shardId, async () => {
      let verdict: TextVerdict;
      try {
        verdict = await review.review(job, a, result, unsure, this.init.signal);
      } catch (err) {
        // Re-scoring broke here (not the provider's doing): the copy is kept unreviewed.
        log.warn("text not re-scored", { assignment: a.id, err: errorMessage(err) });
        return store();
      }
      for (const other of verdict.others) {
        if (other.fault) this.convict(other.copy, job, other.fault, event.shard);
        else if (other.verification) trust.setVerification(other.copy, other.verification);
      }
      if (verdict.fault) return this.convict(a, job, verdict.fault, event.shard);
      return store(verdict.verification);
    });
  }

  private convict(
    a: AssignmentRecord,
    job: JobRecord,
    fault: Parameters<Trust["convict"]>[2],
    shard: number,
  ): IntakeOutcome {
    this.init.trust.convict(a, job, fault, shard);
    this.init.onConvicted(a.provider);
    return "convicted";
  }
}
