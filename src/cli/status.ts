import { ControlClient } from "../node/control/client.ts";
import type { NodeStatus } from "../node/node.ts";
import { defineCommand } from "./command.ts";

export const statusCommand = defineCommand({
  name: "status",
  usage: ["status [--json]"],
  details: "Asks the node running with this INFERNET_HOME (started by `infernet start`).",
  options: {
    json: { type: "boolean", description: "Machine-readable output" },
  },
  async run(ctx, { values }) {
    const client = await ControlClient.require(ctx.config().home);
    const status = await client.status(ctx.signal);
    ctx.stdout.write(values.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
    return 0;
  },
});

export function formatStatus(s: NodeStatus): string {
  const uptime = Math.round(s.uptimeMs / 1000);
  return [
    `Node        ${s.peerId}`,
    `Mode        ${s.mode}, infernet ${s.version}, up ${uptime} s`,
    `Serving     ${s.models.length ? s.models.map((m) => m.name).join(", ") : "nothing"}${s.models.length ? ` at ${s.price} sats/1k tokens` : ""}`,
    `Load        ${s.load.active} running, ${s.load.queued} queued (max ${s.load.maxConcurrent} at once)`,
    `Connections ${s.connections} open, ${s.peersKnown} peers with capability records`,
    "Addresses",
    ...s.addresses.map((a) => `  ${a}`),
    "",
  ].join("\n");
}
