import { catalog, findModel, modelFile } from "../models/catalog.ts";
import { hasRecord } from "../node/local-reputation.ts";
import type { PeerRow } from "../node/node.ts";
import { unitPriceMsat } from "../node/protocols/capability/messages.ts";
import { score } from "../reputation/score.ts";
import { type Ban, ReputationStore } from "../reputation/store.ts";
import { UsageError } from "../util/errors.ts";
import { defineCommand } from "./command.ts";
import { networkAccess } from "./network.ts";
import { applyNetworkOptions, NETWORK_OPTIONS } from "./network-options.ts";
import { formatTable } from "./table.ts";

/** A peer as `infernet peers` shows it: what it announces, and what this node has seen of it. */
export interface PeerView extends PeerRow {
  /**
   * This node's own score of the peer, for `--model` when given, else the mean over the models it
   * has a record of; null when it has none. The record's `reputation` is the peer's claim.
   */
  score: number | null;
  /** The peer's ban here while it lasts. */
  ban: Ban | null;
}

export const peersCommand = defineCommand({
  name: "peers",
  usage: ["peers [--model NAME] [--all] [--json] [--bootstrap MULTIADDR]..."],
  details: `Lists providers and connected peers: id, addresses, GPU, models, price, latency, load, this node's
own score of each (SCORE, see \`infernet reputation\`), what each claims about itself (REPUTATION) and
any ban here (BAN). Banned peers are hidden unless --all is given.
Uses the running node's view (\`infernet start\`) when there is one; otherwise starts a short-lived node,
joins through --bootstrap (and mDNS) and looks up the providers of every catalog model.`,
  options: {
    model: { type: "string", value: "NAME", description: "Only providers of this model (SCORE is for it)" },
    all: { type: "boolean", description: "Also list peers banned here" },
    json: { type: "boolean", description: "Machine-readable output (each row with score and ban)" },
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
    const sha = wanted ? modelFile(wanted).sha256 : undefined;
    if (sha) rows = rows.filter((r) => r.record?.models.some((m) => m.sha256 === sha));
    const all = peerViews(rows, new ReputationStore(ctx.store()), sha);
    const shown = values.all ? all : all.filter((v) => !v.ban);
    ctx.stdout.write(
      values.json ? `${JSON.stringify(shown, null, 2)}\n` : formatPeers(shown, all.length - shown.length),
    );
    return 0;
  },
});

/** Adds this node's score and ban to each peer; `modelSha256` picks the model the score is for. */
export function peerViews(
  rows: PeerRow[],
  reputation: ReputationStore,
  modelSha256?: string,
  now = Date.now(),
): PeerView[] {
  const records = new Map<string, number[]>();
  for (const stats of reputation.all()) {
    if (!hasRecord(stats) || (modelSha256 !== undefined && stats.modelSha256 !== modelSha256)) continue;
    const banned = reputation.banned(stats.provider, now) !== undefined;
    records.set(stats.provider, [...(records.get(stats.provider) ?? []), score(stats, banned)]);
  }
  return rows.map((row) => {
    const scores = records.get(row.peerId);
    return {
      ...row,
      score: scores ? scores.reduce((a, b) => a + b, 0) / scores.length : null,
      ban: reputation.banned(row.peerId, now) ?? null,
    };
  });
}

/** The table; `hidden` banned peers are mentioned under it. */
export function formatPeers(rows: PeerView[], hidden = 0): string {
  const note = hidden ? `${hidden} banned peer(s) hidden (--all shows them).\n` : "";
  if (rows.length === 0) return `No peers found (check --bootstrap; mDNS finds peers on the same LAN).\n${note}`;
  const table = rows.map((r) => {
    const rec = r.record;
    const gpu = rec?.hardware.gpus[0];
    const claim = rec?.reputation;
    return [
      r.peerId.slice(-12),
      gpu
        ? `${gpu.name} ${(gpu.vramTotal / 2 ** 30).toFixed(0)} GiB`
        : rec
          ? `CPU ${rec.hardware.cpu.cores} cores`
          : "-",
      rec ? rec.models.map((m) => m.name).join(",") : "-",
      rec?.models.length ? rec.models.map((m) => `${unitPriceMsat(rec, m.sha256)}`).join(",") : "-",
      r.latencyMs !== undefined ? `${r.latencyMs.toFixed(0)} ms` : "-",
      rec ? `${rec.load.active}/${rec.load.maxConcurrent}` : "-",
      r.score === null ? "-" : r.score.toFixed(2),
      claim
        ? `claims ${claim.completed} ok, ${claim.failed} failed${claim.score === undefined ? "" : `, ${claim.score.toFixed(2)}`}`
        : "-",
      r.ban ? `until ${new Date(r.ban.until).toISOString().slice(0, 16)} (${r.ban.reason})` : "-",
      r.addrs[0] ?? "",
    ];
  });
  const head = ["PEER", "HARDWARE", "MODELS", "PRICE", "LATENCY", "LOAD", "SCORE", "REPUTATION", "BAN", "ADDRESS"];
  return `${formatTable(head, table)}\n${note}`;
}
