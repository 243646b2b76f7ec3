import type { Database } from "bun:sqlite";
import type { AssignmentRecord, JobRecord, ShardRecord } from "./rows.ts";
import { ASSIGNMENT_STATES, type AssignmentState, type JobState, SHARD_STATES, type ShardState } from "./states.ts";
import type { Verification } from "./verify/verdict.ts";

/** How far a job has got: shards and copies per state. */
export interface JobProgress {
  jobId: string;
  state: JobState;
  shardCount: number;
  shards: Record<ShardState, number>;
  copies: Record<AssignmentState, number>;
  /** Copies lost or rejected over the whole job. */
  retries: number;
}

/** One copy of a shard in a report: who computed it, when, and what came of it. */
export interface CopyReport {
  assignmentId: string;
  provider: string;
  state: AssignmentState;
  leasedAt: number;
  startedAt: number | undefined;
  returnedAt: number | undefined;
  endedAt: number | undefined;
  /** Lease (or start) to return, when returned: queueing and transfer included. */
  wallMs: number | undefined;
  /** Engine time the provider reported, when it returned the copy. */
  computeMs: number | undefined;
  reason: string | undefined;
  resultSha256: string | undefined;
  /** How the copy was checked and the verdict (agreement, canary, re-score, majority, spot-check). */
  verification: Verification | undefined;
}

export interface ShardReport {
  index: number;
  start: number;
  count: number;
  state: ShardState;
  retries: number;
  resultSha256: string | undefined;
  /** Copies the shard was given (adaptive replication: between the job's floor and its redundancy). */
  copiesTarget: number;
  copies: CopyReport[];
}

/** What each provider did for the job; the payments and reputation issues build on this. */
export interface ProviderReport {
  provider: string;
  copies: Record<AssignmentState, number>;
  computeMs: number;
}

/** What a job cost, in millisatoshi: the providers' verified copies at their prices, plus the aggregator's fee. */
export interface JobCost {
  providersMsat: number;
  feeMsat: number;
  totalMsat: number;
  feePercent: number;
  byProvider: Record<string, number>;
}

export interface JobReport {
  job: JobRecord;
  /** Filled in by the aggregator that ran the job. */
  cost?: JobCost;
  shards: ShardReport[];
  providers: ProviderReport[];
  retries: number;
  /** Submission to verification, or to now while unfinished. */
  wallMs: number;
}

const zeroes = <S extends string>(states: readonly S[]) =>
  Object.fromEntries(states.map((s) => [s, 0])) as Record<S, number>;

export function jobProgress(db: Database, job: JobRecord): JobProgress {
  const shards = zeroes(SHARD_STATES);
  const shardRows = db
    .query<{ state: ShardState; n: number; retries: number }, [string]>(
      "SELECT state, count(*) AS n, sum(retries) AS retries FROM shards WHERE job_id = ? GROUP BY state",
    )
    .all(job.id);
  let retries = 0;
  for (const r of shardRows) {
    shards[r.state] = r.n;
    retries += r.retries;
  }
  const copies = zeroes(ASSIGNMENT_STATES);
  const copyRows = db
    .query<{ state: AssignmentState; n: number }, [string]>(
      "SELECT state, count(*) AS n FROM assignments WHERE job_id = ? GROUP BY state",
    )
    .all(job.id);
  for (const r of copyRows) copies[r.state] = r.n;
  return { jobId: job.id, state: job.state, shardCount: job.shardCount, shards, copies, retries };
}

export function jobReport(
  job: JobRecord,
  shards: readonly ShardRecord[],
  assignments: readonly AssignmentRecord[],
  now: number,
): JobReport {
  const byShard = new Map<number, CopyReport[]>();
  const providers = new Map<string, ProviderReport>();
  for (const a of assignments) {
    const wallMs = a.returnedAt === undefined ? undefined : a.returnedAt - (a.startedAt ?? a.leasedAt);
    const computeMs = a.computeMs;
    const copy: CopyReport = {
      assignmentId: a.id,
      provider: a.provider,
      state: a.state,
      leasedAt: a.leasedAt,
      startedAt: a.startedAt,
      returnedAt: a.returnedAt,
      endedAt: a.endedAt,
      wallMs,
      computeMs,
      reason: a.reason,
      resultSha256: a.resultSha256,
      verification: a.verification,
    };
    const list = byShard.get(a.shardId) ?? [];
    list.push(copy);
    byShard.set(a.shardId, list);
    let p = providers.get(a.provider);
    if (!p) {
      p = { provider: a.provider, copies: zeroes(ASSIGNMENT_STATES), computeMs: 0 };
      providers.set(a.provider, p);
    }
    p.copies[a.state]++;
    p.computeMs += computeMs ?? 0;
  }
  const shardReports = shards.map((s) => ({
    index: s.index,
    start: s.start,
    count: s.count,
    state: s.state,
    retries: s.retries,
    resultSha256: s.resultSha256,
    copiesTarget: s.target ?? job.spec.redundancy,
    copies: byShard.get(s.id) ?? [],
  }));
  return {
    job,
    shards: shardReports,
    providers: [...providers.values()].sort((a, b) => (a.provider < b.provider ? -1 : 1)),
    retries: shards.reduce((n, s) => n + s.retries, 0),
    wallMs: (job.finishedAt ?? now) - job.createdAt,
  };
}
