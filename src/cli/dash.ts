import { join } from "node:path";
import { environment } from "../config/env.ts";
import { UsageError } from "../util/errors.ts";
import { configureLogging } from "../util/logger.ts";
import { defineCommand } from "./command.ts";

export const dashCommand = defineCommand({
  name: "dash",
  usage: ["dash"],
  details: `Opens the terminal dashboard on the node running with this INFERNET_HOME (started by
\`infernet start\`): hardware, jobs, peers, earnings and the node's log, refreshed every second.
The dashboard only watches and steers the node: quitting it (q) leaves the node running.
Keys: ? help, tab/arrows between panels, p pause/resume serving, / filter peers by model, q quit.
Needs a terminal; set NO_COLOR for a monochrome screen. In scripts use \`infernet status\` instead.`,
  options: {},
  async run(ctx, { positionals }) {
    if (positionals.length) throw new UsageError(`dash: unexpected argument "${positionals[0]}"`);
    // Keys come from stdin and frames go to stdout: both must be a terminal, or Ink cannot work.
    if (!ctx.stdout.isTTY || !process.stdin.isTTY) {
      throw new UsageError("dash needs a terminal (stdin and stdout must be a TTY)", {
        hint: "use `infernet status --json` or `infernet peers` in scripts and pipes",
      });
    }
    const config = ctx.config();
    // While the dashboard owns the terminal nothing else may write to it: logs go to the file only.
    configureLogging({ level: config.log, dir: join(config.home, "logs"), stderr: false });
    // Ink and React load here, only when the dashboard opens: every other command stays headless.
    const { DashboardClient } = await import("../tui/client.ts");
    // NodeNotRunningError (with the hint to `infernet start`) when no node answers on this home.
    const client = await DashboardClient.connect(config.home);
    const { runDashboard } = await import("../tui/run.ts");
    await runDashboard(client, { mono: Boolean(environment().NO_COLOR), signal: ctx.signal });
    return 0;
  },
});
