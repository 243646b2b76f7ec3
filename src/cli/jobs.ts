import { SubmittedJobs } from "../jobs/submitted-jobs.ts";
import { UsageError } from "../util/errors.ts";
import { defineCommand } from "./command.ts";
import { heldJobs } from "./job-list.ts";
import { formatHeldJobs, formatSubmittedJobs } from "./job-print.ts";

export const jobsCommand = defineCommand({
  name: "jobs",
  usage: ["jobs [--json]"],
  details: `Lists the batch jobs submitted from this INFERNET_HOME, newest first: id, model, state, shards,
aggregator, output file and age. When this home runs an aggregator (\`infernet start --aggregator\`), the
jobs it holds for its clients follow. \`infernet job <id>\` shows one job's report.`,
  options: {
    json: { type: "boolean", description: "One JSON object: {submitted: [...], held: [...]}" },
  },
  async run(ctx, { values, positionals }) {
    if (positionals.length) throw new UsageError(`jobs: unexpected argument "${positionals[0]}"`);
    const store = ctx.store();
    const submitted = new SubmittedJobs(store).list();
    const held = heldJobs(store);
    if (values.json) {
      ctx.stdout.write(`${JSON.stringify({ submitted, held })}\n`);
      return 0;
    }
    const now = Date.now();
    ctx.stdout.write(`${formatSubmittedJobs(submitted, now)}\n`);
    if (held.length) ctx.stdout.write(`\njobs held by this aggregator:\n${formatHeldJobs(held, now)}\n`);
    return 0;
  },
});
