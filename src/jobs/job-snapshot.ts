import { DEFAULT_PROMPT_TOKENS, type PlanCopy, TOKENS_PER_TENSOR_RECORD } from "./feasibility.ts";
import type { JobReader } from "./job-reader.ts";
import type { PlanJob, PlanShard } from "./scheduler.ts";
import type { JobSpec } from "./spec.ts";
import { LIVE_ASSIGNMENT_STATES, TERMINAL_SHARD_STATES } from "./states.ts";

/** Work units per record of a job: the prompt's token budget for text, one per tensor record. */
export function tokensPerRecord(spec: JobSpec): number {
  if (spec.input.kind !== "prompts") return TOKENS_PER_TENSOR_RECORD;
  const maxTokens = spec.params?.maxTokens;
  return typeof maxTokens === "number" && Number.isFinite(maxTokens) && maxTokens > 0
    ? maxTokens
    : DEFAULT_PROMPT_TOKENS;
}

/** A stored job as the planner sees it: its terms, and each shard's live copies. */
export function snapshotJob(reader: JobReader, jobId: string): PlanJob {
  const report = reader.report(jobId);
  const { job } = report;
  const perRecord = tokensPerRecord(job.spec);
  const ids = new Map(reader.shards(jobId).map((s) => [s.index, s.id]));
  const shards: PlanShard[] = report.shards.map((s) => {
    const copies: PlanCopy[] = [];
    for (const c of s.copies) {
      if (!LIVE_ASSIGNMENT_STATES.includes(c.state)) continue;
      copies.push({
        provider: c.provider,
        state: c.state as PlanCopy["state"],
        leasedAt: c.leasedAt,
        ...(c.startedAt !== undefined && { startedAt: c.startedAt }),
        ...(c.returnedAt !== undefined && { returnedAt: c.returnedAt }),
      });
    }
    const done = TERMINAL_SHARD_STATES.includes(s.state);
    const missing = done ? 0 : Math.max(0, job.spec.redundancy - copies.length);
    return { id: ids.get(s.index) as number, index: s.index, count: s.count, done, missing, copies };
  });
  return {
    id: job.id,
    sha256: job.spec.model.sha256,
    redundancy: job.spec.redundancy,
    maxPriceMsat: job.spec.maxPriceMsat,
    deadlineMs: job.spec.deadlineMs,
    totalTokens: shards.reduce((sum, s) => sum + s.count * perRecord, 0),
    tokensPerRecord: perRecord,
    shards,
  };
}
