import type { JobReport, ShardReport } from "../jobs/job-report.ts";
import type { SubmittedJob } from "../jobs/submitted-jobs.ts";
import type { OutputFetched } from "../node/control/jobs-ops.ts";
import type { HeldJob } from "./job-list.ts";
import { formatBytes, formatDuration } from "./progress.ts";

/**
 * Words for job reports: the summary `infernet submit` ends with, the full report of `infernet job
 * <id>`, and the table of `infernet jobs`. Pure functions of their input, so tests compare strings.
 */

/** Shards listed one by one in a report; a longer job lists only those with retries or failures. */
export const MAX_LISTED_SHARDS = 50;
/** Characters of a peer id shown in tables (the full id is in --json). */
const SHORT_ID_CHARS = 12;

/** `12D3KooWAbc…`: enough to tell providers apart in a table. */
export function shortId(id: string): string {
  return id.length > SHORT_ID_CHARS + 1 ? `${id.slice(0, SHORT_ID_CHARS)}…` : id;
}

export function formatMsat(msat: number): string {
  return msat >= 1_000
    ? `${(msat / 1_000).toLocaleString("en-US", { maximumFractionDigits: 3 })} sats`
    : `${msat} msat`;
}

/** `1,234 sats (providers 1,222 sats + 1% fee 12 sats)`; a report read from a store has no cost. */
function costText(report: JobReport): string {
  const { cost } = report;
  if (!cost) return "not reported";
  return `${formatMsat(cost.totalMsat)} (providers ${formatMsat(cost.providersMsat)} + ${cost.feePercent}% fee ${formatMsat(cost.feeMsat)})`;
}

/** The lines `submit` and `job --wait` end with. */
export function formatSummary(report: JobReport, output: OutputFetched & { path: string }): string {
  const { job } = report;
  return [
    `output: ${output.path} (${output.records} records, ${formatBytes(output.bytes)})`,
    `shards: ${job.shardCount} (redundancy ${job.spec.redundancy}), providers: ${report.providers.length}, retries: ${report.retries}`,
    `wall time: ${formatDuration(report.wallMs / 1000)}, cost: ${costText(report)} (at most ${formatMsat(job.spec.maxPriceMsat)})`,
  ].join("\n");
}

/** The full report of `infernet job <id>`. */
export function formatReport(report: JobReport): string {
  const { job } = report;
  const lines = [
    `job ${job.id}: ${job.state}${job.error ? ` (${job.error})` : ""}`,
    `  model: ${job.spec.model.name}, ${job.shardCount} shards, redundancy ${job.spec.redundancy}`,
    `  verified: ${job.shardsVerified}/${job.shardCount}, retries: ${report.retries}, wall time: ${formatDuration(report.wallMs / 1000)}`,
    `  cost: ${costText(report)} (at most ${formatMsat(job.spec.maxPriceMsat)})`,
  ];
  if (report.providers.length) {
    lines.push("providers:");
    for (const p of report.providers) {
      const c = p.copies;
      const paid = report.cost?.byProvider[p.provider];
      lines.push(
        `  ${p.provider}  verified ${c.verified}, returned ${c.returned}, running ${c.running + c.leased}, failed ${c.failed}, reassigned ${c.reassigned}  compute ${formatDuration(p.computeMs / 1000)}${paid !== undefined ? `  ${formatMsat(paid)}` : ""}`,
      );
    }
  }
  const shards =
    report.shards.length <= MAX_LISTED_SHARDS
      ? report.shards
      : report.shards.filter((s) => s.retries > 0 || s.state === "failed").slice(0, MAX_LISTED_SHARDS);
  if (shards.length) {
    lines.push(report.shards.length <= MAX_LISTED_SHARDS ? "shards:" : "shards with retries or failures:");
    for (const s of shards) lines.push(...shardLines(s));
  }
  return lines.join("\n");
}

function shardLines(s: ShardReport): string[] {
  const target = s.copiesTarget !== undefined ? `, ${s.copiesTarget} ${s.copiesTarget === 1 ? "copy" : "copies"}` : "";
  const head = `  #${s.index} records ${s.start}-${s.start + s.count - 1}: ${s.state}${target}${s.retries ? `, ${s.retries} retries` : ""}`;
  const copies = s.copies.map((c) => {
    const took = c.computeMs !== undefined ? ` ${formatDuration(c.computeMs / 1000)}` : "";
    const v = c.verification;
    // How it was checked, the verdict and what was found; a rejected copy's evidence id.
    const check = v
      ? ` [${v.method}: ${v.verdict}, ${v.detail}${v.evidenceId ? `, evidence ${v.evidenceId.slice(0, 16)}` : ""}]`
      : "";
    const why = c.reason && !v ? ` (${c.reason})` : "";
    return `      ${shortId(c.provider)} ${c.state}${took}${check}${why}`;
  });
  return [head, ...copies];
}

/** `infernet jobs`: one row per submitted job, newest first. */
export function formatSubmittedJobs(jobs: readonly SubmittedJob[], now: number): string {
  if (!jobs.length) return "no jobs submitted from here yet (`infernet submit --help`)";
  const rows = jobs.map((j) => [
    j.jobId,
    j.model,
    j.state,
    String(j.shardCount),
    shortId(j.aggregator),
    j.outputPath,
    `${formatDuration((now - j.submittedAt) / 1000)} ago`,
  ]);
  return table(["JOB", "MODEL", "STATE", "SHARDS", "AGGREGATOR", "OUTPUT", "AGE"], rows);
}

/** Jobs this home holds as an aggregator. */
export function formatHeldJobs(jobs: readonly Omit<HeldJob, "error">[], now: number): string {
  const rows = jobs.map((j) => [
    j.id,
    j.model,
    j.state,
    `${j.verified}/${j.shards}`,
    shortId(j.client),
    `${formatDuration((now - j.createdAt) / 1000)} ago`,
  ]);
  return table(["JOB", "MODEL", "STATE", "VERIFIED", "CLIENT", "AGE"], rows);
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}
