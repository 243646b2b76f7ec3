import { expect, test } from "bun:test";
import type { JobReport } from "../jobs/job-report.ts";
import { ASSIGNMENT_STATES } from "../jobs/states.ts";
import {
  formatMsat,
  formatReport,
  formatSubmittedJobs,
  formatSummary,
  MAX_LISTED_SHARDS,
  shortId,
} from "./job-print.ts";

const copies = (patch: Partial<Record<(typeof ASSIGNMENT_STATES)[number], number>>) => ({
  ...(Object.fromEntries(ASSIGNMENT_STATES.map((s) => [s, 0])) as Record<(typeof ASSIGNMENT_STATES)[number], number>),
  ...patch,
});

function report(shards: number, patch: Partial<JobReport> = {}): JobReport {
  return {
    job: {
      id: "job-1",
      idempotencyKey: "k",
      spec: {
        model: { name: "mnist-8", sha256: "ab".repeat(32) },
        input: { kind: "idx", path: "t10k.gz" },
        redundancy: 2,
        maxPriceMsat: 5_000_000,
        deadlineMs: 1,
        idempotencyKey: "k",
      },
      state: "verified",
      error: undefined,
      shardCount: shards,
      shardsReturned: shards,
      shardsVerified: shards,
      createdAt: 0,
      updatedAt: 0,
      finishedAt: 12_000,
    },
    shards: Array.from({ length: shards }, (_, i) => ({
      index: i,
      start: i * 10,
      count: 10,
      state: "verified" as const,
      retries: i === 1 ? 1 : 0,
      resultSha256: undefined,
      copiesTarget: 2,
      copies: [
        {
          assignmentId: `a${i}`,
          provider: "12D3KooWProviderAAAAAAAAAAAA",
          state: i === 1 ? ("reassigned" as const) : ("verified" as const),
          leasedAt: 0,
          startedAt: 0,
          returnedAt: 1_500,
          endedAt: 2_000,
          wallMs: 1_600,
          computeMs: 1_500,
          reason: i === 1 ? "provider lost" : undefined,
          resultSha256: undefined,
          verification:
            i === 2
              ? {
                  method: "canary" as const,
                  verdict: "rejected" as const,
                  detail: "canary at record 7 of 12 answered wrong",
                  evidenceId: "ab".repeat(32),
                }
              : undefined,
        },
      ],
    })),
    providers: [
      { provider: "12D3KooWProviderAAAAAAAAAAAA", copies: copies({ verified: 2, reassigned: 1 }), computeMs: 4_500 },
    ],
    retries: 1,
    wallMs: 12_000,
    ...patch,
  };
}

test("msat and ids read easily", () => {
  expect(formatMsat(999)).toBe("999 msat");
  expect(formatMsat(1_234_500)).toBe("1,234.5 sats");
  expect(shortId("12D3KooWProviderAAAAAAAAAAAA")).toBe("12D3KooWProv…");
  expect(shortId("short")).toBe("short");
});

test("the submit summary: output, shards, providers, retries, time and cost", () => {
  const r = report(3, {
    cost: { providersMsat: 200_000, feeMsat: 2_000, totalMsat: 202_000, feePercent: 1, byProvider: {} },
  });
  expect(formatSummary(r, { path: "/out.jsonl", bytes: 1_850_000, sha256: "x", records: 30 })).toBe(
    [
      "output: /out.jsonl (30 records, 1.85 MB)",
      "shards: 3 (redundancy 2), providers: 1, retries: 1",
      "wall time: 12s, cost: 202 sats (providers 200 sats + 1% fee 2 sats) (at most 5,000 sats)",
    ].join("\n"),
  );
  expect(formatSummary(report(1), { path: "/o", bytes: 1, sha256: "x", records: 1 })).toContain("cost: not reported");
});

test("the report shows who computed which copy, how it was verified, and why a copy was reassigned", () => {
  const text = formatReport(report(3));
  expect(text).toContain("job job-1: verified");
  expect(text).toContain(
    "12D3KooWProviderAAAAAAAAAAAA  verified 2, returned 0, running 0, failed 0, reassigned 1  compute 5s",
  );
  expect(text).toContain("#1 records 10-19: verified, 2 copies, 1 retries");
  expect(text).toContain("12D3KooWProv… reassigned 2s (provider lost)");
  expect(text).toContain(
    "12D3KooWProv… verified 2s [canary: rejected, canary at record 7 of 12 answered wrong, evidence abababababababab]",
  );
});

test("a long job lists only its shards with retries or failures", () => {
  const text = formatReport(report(MAX_LISTED_SHARDS + 10));
  expect(text).toContain("shards with retries or failures:");
  expect(text.match(/^ {2}#/gm)).toHaveLength(1);
});

test("the jobs table, newest first as given, or a hint when empty", () => {
  expect(formatSubmittedJobs([], 0)).toContain("no jobs submitted");
  const table = formatSubmittedJobs(
    [
      {
        jobId: "job-2",
        aggregator: "12D3KooWAggregatorBBBBBBB",
        aggregatorAddrs: [],
        idempotencyKey: "k2",
        model: "stories260k",
        records: 64,
        shardCount: 4,
        outputPath: "/p.results.jsonl",
        state: "running",
        error: undefined,
        submittedAt: 0,
        updatedAt: 0,
      },
    ],
    90_000,
  );
  expect(table.split("\n")).toEqual([
    "JOB    MODEL        STATE    SHARDS  AGGREGATOR     OUTPUT            AGE",
    "job-2  stories260k  running  4       12D3KooWAggr…  /p.results.jsonl  1m30s ago",
  ]);
});
