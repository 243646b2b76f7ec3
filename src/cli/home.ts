import { ControlClient } from "../node/control/client.ts";
import { UsageError } from "../util/errors.ts";
import { defineCommand } from "./command.ts";
import { openDashboard } from "./dash.ts";
import { runNode } from "./start.ts";

/**
 * `infernet` with no arguments on a terminal (an SSH session to a rig): the dashboard of the node
 * running with this INFERNET_HOME, or, when none runs, a node started here with its dashboard,
 * serving the models of the `serve` setting (a client/relay node when it names none). Without a
 * terminal, `infernet` alone prints the help instead (index.ts), so scripts never start a node by accident.
 */
export const homeCommand = defineCommand({
  name: "",
  usage: [""],
  options: {},
  async run(ctx, { positionals }) {
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const config = ctx.config();
    if (await ControlClient.connect(config.home)) {
      await openDashboard(ctx, config, false);
      return 0;
    }
    return runNode(ctx, { models: config.serve, json: false, dashboard: true });
  },
});
