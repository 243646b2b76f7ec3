import { catalog, findModel, modelFile } from "../models/catalog.ts";
import type { PeerRow } from "../node/node.ts";
import { UsageError } from "../util/errors.ts";
import { defineCommand } from "./command.ts";
import { networkAccess } from "./network.ts";
import { applyNetworkOptions, NETWORK_OPTIONS } from "./network-options.ts";

export const peersCommand = defineCommand({
  name: "peers",
  usage: ["peers [--model NAME] [--json] [--bootstrap MULTIADDR]..."],
  details: `Lists providers and connected peers: id, addresses, GPU, models, price, latency, load, reputation.
Uses the running node's view (\`infernet start\`) when there is one; otherwise starts a short-lived node,
joins through --bootstrap (and mDNS) and looks up the providers of every catalog model.`,
  options: {
    model: { type: "string", value: "NAME", description: "Only providers of this model" },
    json: { type: "boolean", description: "Machine-readable output" },
    ...NETWORK_OPTIONS,
  },
  async run(ctx, { values, positionals }) {
    if (positionals.length) throw new UsageError(`peers: unexpected argument "${positionals[0]}"`);
    const wanted = values.model ? findModel(values.model) : undefined;
    if (values.model && !wanted)
      throw new UsageError(`peers: unknown model "${values.model}"`, { hint: "see `infernet models`" });
    applyNetworkOptions(ctx, values);
    await using access = await networkAccess(ctx);
    let rows: PeerRow[];
    if (!access) rows = [];
    else if (access.control) rows = await access.control.peers(ctx.signal);
    else {
      const node = access.node!;
      const models = wanted ? [wanted] : catalog();
      await Promise.all(
        models.map((m) => node.capability.findProviders(modelFile(m).sha256, { signal: ctx.signal }).catch(() => [])),
      );
      rows = await node.peers(ctx.signal);
    }
    if (wanted) {
      const sha = modelFile(wanted).sha256;
      rows = rows.filter((r) => r.record?.models.some((m) => m.sha256 === sha));
    }
    ctx.stdout.write(values.json ? `${JSON.stringify(rows, null, 2)}\n` : formatPeers(rows));
    return 0;
  },
});

function formatPeers(rows: PeerRow[]): string {
  if (rows.length === 0) return "No peers found (check --bootstrap; mDNS finds peers on the same LAN).\n";
  const table = rows.map((r) => {
    const rec = r.record;
    const gpu = rec?.hardware.gpus[0];
    return [
      r.peerId.slice(-12),
      gpu
        ? `${gpu.name} ${(gpu.vramTotal / 2 ** 30).toFixed(0)} GiB`
        : rec
          ? `CPU ${rec.hardware.cpu.cores} cores`
          : "-",
      rec ? rec.models.map((m) => m.name).join(",") : "-",
      rec ? `${rec.price.satsPer1kTokens}` : "-",
      r.latencyMs !== undefined ? `${r.latencyMs.toFixed(0)} ms` : "-",
      rec ? `${rec.load.active}/${rec.load.maxConcurrent}` : "-",
      rec ? `${rec.reputation.completed} ok, ${rec.reputation.failed} failed` : "-",
      r.addrs[0] ?? "",
    ];
  });
  const head = ["PEER", "HARDWARE", "MODELS", "PRICE", "LATENCY", "LOAD", "REPUTATION", "ADDRESS"];
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  return `${[line(head), ...table.map(line)].join("\n")}\n`;
}
