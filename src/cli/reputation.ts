import { readFile, writeFile } from "node:fs/promises";
import { findModelBySha } from "../models/catalog.ts";
import { References } from "../node/aggregator/reference.ts";
import { checkEvidence } from "../reputation/evidence.ts";
import { deliveredUps, type ProviderStats, scoreParts } from "../reputation/score.ts";
import { type Ban, ReputationStore } from "../reputation/store.ts";
import { UsageError } from "../util/errors.ts";
import { defineCommand } from "./command.ts";
import { formatTable } from "./table.ts";

/** One provider and model as `infernet reputation` shows it. */
export interface ReputationRow {
  provider: string;
  model: string;
  modelSha256: string;
  uptime: number;
  completion: number;
  accuracy: number;
  speed: number;
  score: number;
  verified: number;
  faulty: number;
  lost: number;
  streak: number;
  meanLatencyMs: number | undefined;
  deliveredUnitsPerSecond: number | undefined;
  announcedUnitsPerSecond: number | undefined;
  ban: Ban | undefined;
}

export function reputationRows(rep: ReputationStore, now = Date.now()): ReputationRow[] {
  return rep.all().map((s: ProviderStats) => {
    const ban = rep.banned(s.provider, now);
    const parts = scoreParts(s, ban !== undefined);
    return {
      provider: s.provider,
      model: findModelBySha(s.modelSha256)?.name ?? s.modelSha256.slice(0, 12),
      modelSha256: s.modelSha256,
      ...parts,
      verified: s.verified,
      faulty: s.faulty,
      lost: s.lost,
      streak: s.streak,
      meanLatencyMs: s.returned ? s.latencyMs / s.returned : undefined,
      deliveredUnitsPerSecond: deliveredUps(s),
      announcedUnitsPerSecond: s.announcedUps,
      ban,
    };
  });
}

export const reputationCommand = defineCommand({
  name: "reputation",
  usage: ["reputation [--json]", "reputation --evidence ID --output FILE", "reputation --adopt FILE"],
  details: `What this node (an aggregator) has seen of each provider, per model: uptime, completion, mean
latency, verified and faulty copies, the score in [0, 1] and any ban (until when, why).
score = accuracy^2 x completion x uptime x speed, where accuracy = (verified+1)/(verified+1+10 x faulty),
completion = (returned+1)/(returned+1+lost), uptime = (seen+1)/(seen+1+missed) and speed = min(1, 3 x
delivered/announced); 0 while banned. --evidence writes a ban's signed evidence to a file, for another
aggregator; --adopt checks such a file (signature, and the record run here gives the reference answer)
and, when it holds, bans the provider here too.`,
  options: {
    json: {
      type: "boolean",
      description: "Machine-readable output: {providers: [...], bans: [...], penalties: [...]}",
    },
    evidence: { type: "string", value: "ID", description: "Write this evidence (its id is in the ban) to --output" },
    output: { type: "string", value: "FILE", description: "Where --evidence writes" },
    adopt: { type: "string", value: "FILE", description: "Check evidence from another aggregator and adopt its ban" },
  },
  async run(ctx, { values, positionals }) {
    if (positionals.length) throw new UsageError(`reputation: unexpected argument "${positionals[0]}"`);
    const store = ctx.store();
    const rep = new ReputationStore(store);
    if (values.evidence !== undefined) {
      if (!values.output) throw new UsageError("reputation: --evidence needs --output FILE");
      const body = rep.evidenceBytes(values.evidence);
      if (!body)
        throw new UsageError(`reputation: no evidence ${values.evidence} here`, {
          hint: "ids are in `infernet reputation --json`",
        });
      await writeFile(values.output, body);
      ctx.stderr.write(`evidence ${values.evidence} written to ${values.output}\n`);
      return 0;
    }
    if (values.adopt !== undefined) {
      const bytes = new Uint8Array(await readFile(values.adopt));
      const config = ctx.config();
      await using references = new References({ config, store, self: "-", served: () => undefined });
      const evidence = await checkEvidence(bytes, {
        reproduce: (model, record) =>
          references.run(model, { index: 0, start: 0, count: 1, payload: record }, ctx.signal),
      });
      rep.saveEvidence(evidence.id, evidence.body.provider, evidence.body.model.sha256, evidence.body.jobId, bytes);
      const ban = rep.ban(
        evidence.body.provider,
        `adopted from ${evidence.body.aggregator}: ${evidence.body.detail}`,
        evidence.id,
        evidence.body.aggregator,
      );
      ctx.stdout.write(
        `${evidence.body.provider} banned until ${new Date(ban.until).toISOString()} (evidence ${evidence.id} checked)\n`,
      );
      return 0;
    }
    const rows = reputationRows(rep);
    if (values.json) {
      ctx.stdout.write(`${JSON.stringify({ providers: rows, bans: rep.bans(), penalties: rep.penalties() })}\n`);
      return 0;
    }
    ctx.stdout.write(formatReputation(rows, rep.bans()));
    return 0;
  },
});

const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

export function formatReputation(rows: ReputationRow[], bans: Ban[], now = Date.now()): string {
  if (rows.length === 0 && bans.length === 0)
    return "No providers seen yet (an aggregator records them as it runs jobs).\n";
  const head = ["PROVIDER", "MODEL", "UPTIME", "COMPLETION", "LATENCY", "VERIFIED", "FAULTY", "SCORE", "BAN"];
  const table = rows.map((r) => [
    r.provider.slice(-12),
    r.model,
    pct(r.uptime),
    pct(r.completion),
    r.meanLatencyMs === undefined ? "-" : `${r.meanLatencyMs.toFixed(0)} ms`,
    String(r.verified),
    String(r.faulty),
    r.score.toFixed(2),
    r.ban
      ? `until ${new Date(r.ban.until).toISOString().slice(0, 16)}` +
        `${r.ban.copiesBefore === undefined ? "" : `, caught in copy ${r.ban.copiesBefore}`} (${r.ban.reason})`
      : "-",
  ]);
  const expired = bans.filter((b) => b.until <= now).length;
  const tail = expired ? `\n${expired} earlier ban(s) expired (they lengthen the next one).\n` : "";
  return `${formatTable(head, table)}\n${tail}`;
}
