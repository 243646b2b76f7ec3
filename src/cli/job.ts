import { JobNotFoundError } from "../jobs/errors.ts";
import { JobReader } from "../jobs/job-reader.ts";
import type { JobReport } from "../jobs/job-report.ts";
import { SubmittedJobs } from "../jobs/submitted-jobs.ts";
import { AggregatorStore } from "../node/aggregator/store.ts";
import type { Store } from "../store/db.ts";
import { UsageError } from "../util/errors.ts";
import { defineCommand } from "./command.ts";
import { jobAccess } from "./job-access.ts";
import { formatReport } from "./job-print.ts";
import { aggregatorOf, followAndFetch } from "./job-run.ts";
import { applyNetworkOptions, NETWORK_OPTIONS } from "./network-options.ts";

export const jobCommand = defineCommand({
  name: "job",
  usage: ["job <id> [--json]", "job <id> --wait"],
  details: `Shows one job's report: its shards, which provider computed which copy and how long it took,
retries and reassignments with their reasons, and the cost. A job this home holds as an aggregator is read
from its own store; a job submitted from here is asked of its aggregator (at the addresses recorded when it
was submitted). --wait follows a running job to the end and writes its output, as \`infernet submit\` does.`,
  options: {
    wait: { type: "boolean", description: "Follow the job to its end and fetch its output" },
    json: { type: "boolean", description: "Machine-readable output" },
    ...NETWORK_OPTIONS,
  },
  async run(ctx, { values, positionals }) {
    const [id, extra] = positionals;
    if (!id) throw new UsageError("job: which job?", { hint: "`infernet jobs` lists them" });
    if (extra !== undefined) throw new UsageError(`job: unexpected argument "${extra}"`);
    applyNetworkOptions(ctx, values);
    const store = ctx.store();
    const submitted = new SubmittedJobs(store).get(id);
    const json = Boolean(values.json);
    if (values.wait) {
      if (!submitted) throw notSubmittedHere(id, held(store, id) !== undefined);
      await using access = await jobAccess(ctx, [aggregatorOf(submitted)]);
      return await followAndFetch(ctx, access, submitted, { json });
    }
    let report = held(store, id);
    if (!report) {
      if (!submitted) throw notSubmittedHere(id, false);
      await using access = await jobAccess(ctx, [aggregatorOf(submitted)]);
      report = await access.report(aggregatorOf(submitted), id, ctx.signal);
    }
    ctx.stdout.write(json ? `${JSON.stringify(report)}\n` : `${formatReport(report)}\n`);
    return 0;
  },
});

/** The report of a job this home holds as an aggregator, read from its own store. */
function held(store: Store, id: string): JobReport | undefined {
  try {
    // A job this home ran as an aggregator has its cost too; any other stored job the plain report.
    const aggregator = new AggregatorStore(store);
    return aggregator.holds(id) ? aggregator.report(id) : new JobReader(store).report(id);
  } catch (err) {
    if (err instanceof JobNotFoundError) return undefined;
    throw err;
  }
}

function notSubmittedHere(id: string, heldHere: boolean): UsageError {
  return heldHere
    ? new UsageError(`job ${id} is held by this aggregator for another client; only its client can follow it`, {
        hint: `\`infernet job ${id}\` shows its report`,
      })
    : new UsageError(`no job ${id} was submitted from this INFERNET_HOME`, { hint: "`infernet jobs` lists them" });
}
