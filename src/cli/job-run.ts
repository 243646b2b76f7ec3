import type { JobReport } from "../jobs/job-report.ts";
import type { JobState } from "../jobs/states.ts";
import { type SubmittedJob, SubmittedJobs } from "../jobs/submitted-jobs.ts";
import type { JobEvent } from "../node/aggregator/api.ts";
import type { AggregatorRef, JobOps, OutputFetched } from "../node/control/jobs-ops.ts";
import { AbortedError, RuntimeError } from "../util/errors.ts";
import type { CliContext } from "./command.ts";
import { formatSummary } from "./job-print.ts";
import { JobProgressView } from "./job-progress.ts";

/**
 * Following a submitted job to its end and fetching its output: what `infernet submit` does after
 * the upload and `infernet job <id> --wait` does for a job submitted earlier. The job's row in
 * `submitted_jobs` follows every state change, so `infernet jobs` is current even after a crash.
 */

export function aggregatorOf(job: SubmittedJob): AggregatorRef {
  return { peerId: job.aggregator, addrs: job.aggregatorAddrs };
}

/** One machine-readable line (--json). */
export function jsonLine(ctx: CliContext, value: unknown): void {
  ctx.stdout.write(`${JSON.stringify(value)}\n`);
}

export async function followAndFetch(
  ctx: CliContext,
  access: JobOps,
  job: SubmittedJob,
  options: { json: boolean },
): Promise<number> {
  const submitted = new SubmittedJobs(ctx.store());
  const aggregator = aggregatorOf(job);
  const view = options.json ? undefined : new JobProgressView(ctx.stderr, job.submittedAt);
  let state: JobState | undefined;
  // One line per outage, not one per retry: set when a watch breaks, cleared by the next event.
  let reconnecting = false;
  const onEvent = (event: JobEvent) => {
    if (reconnecting && view) view.note("reconnected to the aggregator");
    reconnecting = false;
    if (event.job.state !== state) {
      state = event.job.state;
      submitted.update(job.jobId, job.aggregator, state, event.job.error);
    }
    if (view) view.update(event);
    else jsonLine(ctx, { event: event.type, job: event.job });
  };
  let finished: Extract<JobEvent, { type: "finished" }>;
  try {
    finished = await access.follow(aggregator, job.jobId, {
      signal: ctx.signal,
      onEvent,
      onReconnect: (reason) => {
        if (reconnecting) return;
        reconnecting = true;
        const text = `lost the aggregator (${reason}); reconnecting`;
        if (view) view.note(text);
        else jsonLine(ctx, { event: "reconnecting", reason });
      },
    });
  } catch (err) {
    view?.finish();
    if (ctx.signal.aborted) {
      throw new AbortedError(`stopped following job ${job.jobId}; it keeps running on aggregator ${job.aggregator}`, {
        hint: `resume with \`infernet job ${job.jobId} --wait\``,
      });
    }
    throw err;
  }
  view?.finish();
  submitted.update(job.jobId, job.aggregator, finished.job.state, finished.job.error);
  // A verified job without an output is one whose results could not be merged: that is the failure to show.
  if (finished.job.state !== "verified" || !finished.output) {
    throw new RuntimeError(`job ${job.jobId} ${finished.job.state}: ${finished.job.error ?? "no reason given"}`, {
      hint: `\`infernet job ${job.jobId}\` shows its report`,
    });
  }

  // Resumed from `<output>.partial` after a cut; sha256-checked before it takes the output's name.
  if (!options.json) ctx.stderr.write(`job ${job.jobId} verified; fetching its output\n`);
  let output: OutputFetched;
  let report: JobReport;
  try {
    output = await access.fetchOutput(aggregator, job.jobId, job.outputPath, { signal: ctx.signal });
    submitted.update(job.jobId, job.aggregator, "fetched");
    report = await access.report(aggregator, job.jobId, ctx.signal);
  } catch (err) {
    if (!ctx.signal.aborted) throw err;
    throw new AbortedError(`stopped fetching the output of job ${job.jobId}`, {
      hint: `resume with \`infernet job ${job.jobId} --wait\``,
    });
  }
  if (options.json) {
    jsonLine(ctx, { event: "output", jobId: job.jobId, path: job.outputPath, ...output });
    jsonLine(ctx, { event: "report", report });
  } else {
    ctx.stdout.write(`${formatSummary(report, { ...output, path: job.outputPath })}\n`);
  }
  return 0;
}
