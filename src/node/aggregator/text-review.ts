import type { PromptRecord, Shard, ShardResult } from "../../jobs/records.ts";
import type { AssignmentRecord, JobRecord } from "../../jobs/rows.ts";
import { shardFromWire } from "../../jobs/shard-codec.ts";
import type { Canary } from "../../jobs/verify/canaries.ts";
import { compareResults } from "../../jobs/verify/compare.ts";
import { pickPayload, pickResult } from "../../jobs/verify/records.ts";
import type { TextJudgement } from "../../jobs/verify/text.ts";
import type { Verification } from "../../jobs/verify/verdict.ts";
import type { Fault } from "../../reputation/evidence.ts";
import { logger } from "../../util/logger.ts";
import type { ModelRef } from "../protocols/infer/index.ts";
import { decode } from "../wire.ts";
import { resultFromBytes } from "./results.ts";
import type { AggregatorStore } from "./store.ts";

/**
 * Text copies are checked by re-scoring (jobs/verify/text.ts): llama.cpp's greedy output may differ
 * between honest machines where two tokens nearly tie, so two texts that differ prove nothing by
 * themselves, and a text canary that differs from its known answer is not yet a fault. Whenever
 * texts differ, the records on which they differ are replayed through the model here: a text the
 * model could not have produced is a fault (proof, with evidence); texts that both pass are both
 * honest, and the shard counts them as one answer (settle.ts). A trusted provider's single copy
 * (adaptive replication) gets SPOT_RESCORE_RECORDS of its records re-scored besides its canaries.
 * Copies of one shard are reviewed in turn, so each sees the copies stored before it. Without a
 * re-scorer (the aggregator cannot run the model) differing text is never held against anyone.
 */

const log = logger("aggregator:text");

/** Records of a single text copy re-scored as a spot check. */
export const SPOT_RESCORE_RECORDS = 1;

/** Replays prompt + output through the model; undefined when this node cannot run it. */
export type Rescorer = (
  model: ModelRef,
  items: { record: PromptRecord; output: string }[],
  signal: AbortSignal,
) => Promise<TextJudgement[] | undefined>;

export interface TextVerdict {
  /** This copy's fault, when re-scoring found one. */
  fault?: Fault;
  /** This copy's verification, when it was re-scored and passed. */
  verification?: Verification;
  /** Copies stored before it that were re-scored against it: their fault or their verification. */
  others: { copy: AssignmentRecord; fault?: Fault; verification?: Verification }[];
}

type Text = Extract<ShardResult, { kind: "text" }>;

export class TextReview {
  private readonly turns = new Map<number, Promise<unknown>>();

  constructor(
    private readonly store: AggregatorStore,
    private readonly rescore: Rescorer | undefined,
    /** This node's own run of a shard (reference.ts): a last check before a greedy text is convicted. */
    private readonly reference?: (
      model: ModelRef,
      shard: Shard,
      signal: AbortSignal,
    ) => Promise<ShardResult | undefined>,
    private readonly random: () => number = Math.random,
  ) {}

  /**
   * Whether this node's own greedy run of the record gives exactly `output`: a fault found by
   * re-scoring is only convicted when it does not, so a re-scorer's mistake never bans anyone.
   */
  private async regeneratesTo(
    model: ModelRef,
    record: PromptRecord,
    output: string,
    signal: AbortSignal,
  ): Promise<boolean> {
    if (!this.reference || (record.temperature ?? 0) > 0) return false;
    const payload = { kind: "prompts" as const, prompts: [record] };
    const mine = await this.reference(model, { index: 0, start: 0, count: 1, payload }, signal).catch(() => undefined);
    return mine?.kind === "text" && mine.outputs[0] === output;
  }

  /** Runs `fn` once the reviews of this shard's earlier copies are done. */
  inTurn<T>(shardId: number, fn: () => Promise<T>): Promise<T> {
    const before = this.turns.get(shardId) ?? Promise.resolve();
    const run = before.then(fn, fn);
    const settled = run.catch(() => undefined);
    this.turns.set(shardId, settled);
    void settled.then(() => {
      if (this.turns.get(shardId) === settled) this.turns.delete(shardId);
    });
    return run;
  }

  async review(
    job: JobRecord,
    copy: AssignmentRecord,
    result: Text,
    unsure: { canary: Canary; position: number; got: ShardResult }[],
    signal: AbortSignal,
  ): Promise<TextVerdict> {
    const verdict: TextVerdict = { others: [] };
    const rescore = this.rescore;
    if (!rescore) return verdict;
    const model = job.spec.model;
    let rescored = 0;
    // Canaries whose text differs from the known answer.
    for (const u of unsure) {
      const record = (u.canary.record as Extract<typeof u.canary.record, { kind: "prompts" }>).prompts[0];
      const output = (u.got as Text).outputs[0];
      if (!record || output === undefined) continue;
      const [judgement] = (await rescore(model, [{ record, output }], signal)) ?? [];
      if (!judgement) return verdict;
      rescored++;
      if (!judgement.ok) {
        verdict.fault = {
          kind: "re-score",
          detail: `canary at record ${u.position}: ${judgement.reason}`,
          record: u.canary.record,
          got: u.got,
          expected: u.canary.answer,
        };
        return verdict;
      }
    }
    const input = shardFromWire(decode(this.store.shardInput(copy.shardId))).payload;
    if (input.kind !== "prompts") return verdict;
    const check = async (positions: number[], text: Text): Promise<{ at: number; reason: string } | undefined> => {
      const items = positions.map((i) => ({ record: input.prompts[i] as PromptRecord, output: text.outputs[i] ?? "" }));
      const judgements = (await rescore(model, items, signal)) ?? [];
      rescored += judgements.length;
      for (const [k, j] of judgements.entries()) {
        if (j.ok) continue;
        const item = items[k] as (typeof items)[number];
        if (await this.regeneratesTo(model, item.record, item.output, signal)) {
          // The model here gives exactly this text: the re-scorer is wrong, not the provider.
          log.warn("re-scoring rejected a text the model regenerates exactly", { reason: j.reason });
          continue;
        }
        return { at: positions[k] as number, reason: j.reason };
      }
      return undefined;
    };
    const fault = (at: number, reason: string, text: Text, other?: Text): Fault => ({
      kind: "re-score",
      detail: `record ${at}: ${reason}`,
      record: pickPayload(input, [at]),
      got: pickResult(text, [at]),
      ...(other ? { expected: pickResult(other, [at]) } : {}),
    });
    // Copies stored before this one: re-score the records on which the texts differ, on both sides.
    const held = this.store.jobs
      .assignments(copy.shardId)
      .filter((c) => (c.state === "returned" || c.state === "disputed") && c.id !== copy.id);
    for (const other of held) {
      const stored = this.store.jobs.result(other.id);
      if (!stored || !("bytes" in stored)) continue;
      const theirs = resultFromBytes(stored.bytes, []);
      if (theirs.kind !== "text") continue;
      const diff = compareResults(result, theirs);
      if (diff.same || diff.records === "all") continue;
      const mine = await check(diff.records, result);
      if (mine) {
        verdict.fault = fault(mine.at, mine.reason, result, theirs);
        return verdict;
      }
      const bad = await check(diff.records, theirs);
      verdict.others.push(
        bad
          ? { copy: other, fault: fault(bad.at, bad.reason, theirs, result) }
          : { copy: other, verification: rescoredVerification(diff.records.length) },
      );
    }
    // A single copy (adaptive replication): a few of its records besides its canaries.
    if (held.length === 0 && this.store.jobs.targetCopies(copy.shardId) === 1) {
      const picks = [
        ...new Set(
          Array.from({ length: SPOT_RESCORE_RECORDS }, () => Math.floor(this.random() * result.outputs.length)),
        ),
      ];
      const bad = await check(picks, result);
      if (bad) {
        verdict.fault = fault(bad.at, bad.reason, result);
        return verdict;
      }
    }
    if (rescored > 0) verdict.verification = rescoredVerification(rescored);
    return verdict;
  }
}

function rescoredVerification(records: number): Verification {
  return {
    method: "re-score",
    verdict: "accepted",
    detail: `${records} record(s) re-scored: every token the model's choice or a near tie`,
  };
}

/** Whether a copy's text passed re-scoring (settle.ts counts two such copies as one answer). */
export function rescoredOk(copy: AssignmentRecord): boolean {
  return copy.verification?.method === "re-score" && copy.verification.verdict === "accepted";
}
