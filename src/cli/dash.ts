import { join } from "node:path";
import { environment, preferProductionBuilds } from "../config/env.ts";
import type { Config } from "../config/index.ts";
import { UsageError } from "../util/errors.ts";
import { configureLogging } from "../util/logger.ts";
import { type CliContext, defineCommand } from "./command.ts";

/** Whether keys can come from stdin and frames go to stdout: both must be a terminal for Ink. */
export function onTerminal(ctx: CliContext): boolean {
  return ctx.stdout.isTTY && Boolean(process.stdin.isTTY);
}

/**
 * Opens the dashboard on the node running with `config.home` and returns when the user leaves it.
 * `owner`: this process runs that node (`infernet start`), so `q` drains its work first (the caller
 * stops the node afterwards). While the dashboard owns the terminal the log goes to its file only.
 */
export async function openDashboard(ctx: CliContext, config: Config, owner: boolean): Promise<void> {
  configureLogging({ level: config.log, dir: join(config.home, "logs"), stderr: false });
  // Ink and React load here, only when the dashboard opens: every other path stays headless.
  preferProductionBuilds();
  const { DashboardClient } = await import("../tui/client.ts");
  // NodeNotRunningError (with the hint to `infernet start`) when no node answers on this home.
  const client = await DashboardClient.connect(config.home);
  const { runDashboard } = await import("../tui/run.ts");
  await runDashboard(client, { mono: Boolean(environment().NO_COLOR), owner, signal: ctx.signal });
}

export const dashCommand = defineCommand({
  name: "dash",
  usage: ["dash"],
  details: `Opens the terminal dashboard on the node running with this INFERNET_HOME (started by
\`infernet start\`): hardware, jobs, peers, earnings and the node's log, refreshed every second.
The dashboard only watches and steers the node: quitting it (q) leaves the node running.
Keys: ? help, tab/arrows between panels, enter details, p pause/resume serving, m models served,
/ filter peers by model, q quit.
Needs a terminal; set NO_COLOR for a monochrome screen. In scripts use \`infernet status\` instead.`,
  options: {},
  async run(ctx, { positionals }) {
    if (positionals.length) throw new UsageError(`dash: unexpected argument "${positionals[0]}"`);
    if (!onTerminal(ctx)) {
      throw new UsageError("dash needs a terminal (stdin and stdout must be a TTY)", {
        hint: "use `infernet status --json` or `infernet peers` in scripts and pipes",
      });
    }
    await openDashboard(ctx, ctx.config(), false);
    return 0;
  },
});
