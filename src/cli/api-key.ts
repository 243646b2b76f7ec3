import {
  type ApiKey,
  createKey,
  DEFAULT_KEY_CONCURRENCY,
  DEFAULT_REQUESTS_PER_MINUTE,
  keysPath,
  MAX_BUDGET_SATS,
  MAX_KEY_CONCURRENCY,
  MAX_REQUESTS_PER_MINUTE,
  readKeys,
  revokeKey,
} from "../api/keys.ts";
import { ApiSpendStore } from "../store/api-spend.ts";
import { UsageError } from "../util/errors.ts";
import { intFlag } from "./args.ts";
import { defineCommand } from "./command.ts";
import { formatTable } from "./table.ts";

export const apiKeyCommand = defineCommand({
  name: "api-key",
  usage: [
    "api-key create [--name NAME] [--rpm N] [--concurrency N] [--budget SATS]",
    "api-key list [--json]",
    "api-key revoke ID|NAME",
  ],
  details: `Keys for the HTTP API (\`infernet serve\`, \`infernet start --api\`), kept in INFERNET_HOME/api-keys.json
(mode 0600) as hashes: a key's secret is printed once, when it is created. Requests send it as
Authorization: Bearer <key> (OPENAI_API_KEY for OpenAI's clients). Each key has a request rate per minute,
a number of generations at once and, if given, a budget in satoshis: what its requests spent at the
serving providers' prices (list shows it) may not pass it. A revoked key stops working within a second,
also on a running gateway.
  infernet api-key create --name laptop --rpm 120 --budget 5000`,
  options: {
    name: { type: "string", value: "NAME", description: "A name to know the key by" },
    rpm: {
      type: "string",
      value: "N",
      description: `Requests per minute (default ${DEFAULT_REQUESTS_PER_MINUTE})`,
    },
    concurrency: {
      type: "string",
      value: "N",
      description: `Generations at once (default ${DEFAULT_KEY_CONCURRENCY})`,
    },
    budget: { type: "string", value: "SATS", description: "Most the key may spend, in satoshis (default: no limit)" },
    json: { type: "boolean", description: "Machine-readable output" },
  },
  async run(ctx, { values, positionals }) {
    const [action, target, extra] = positionals;
    if (extra !== undefined) throw new UsageError(`api-key: unexpected argument "${extra}"`);
    const home = ctx.config().home;
    if (action === "create") {
      if (target !== undefined) throw new UsageError(`api-key create: unexpected argument "${target}"`);
      const rpm = intFlag("api-key", "rpm", values.rpm, 1, MAX_REQUESTS_PER_MINUTE);
      const concurrency = intFlag("api-key", "concurrency", values.concurrency, 1, MAX_KEY_CONCURRENCY);
      const budget = intFlag("api-key", "budget", values.budget?.replace(/ ?sats?$/, ""), 0, MAX_BUDGET_SATS);
      if (values.name !== undefined && values.name.length > 128)
        throw new UsageError("api-key: --name is over 128 characters");
      const { key, secret } = createKey(home, {
        ...(values.name !== undefined ? { name: values.name } : {}),
        ...(rpm !== undefined ? { requestsPerMinute: rpm } : {}),
        ...(concurrency !== undefined ? { concurrency } : {}),
        ...(budget !== undefined ? { budgetSats: budget } : {}),
      });
      if (values.json) ctx.stdout.write(`${JSON.stringify({ ...key, secret })}\n`);
      else {
        ctx.stdout.write(`${secret}\n`);
        ctx.stderr.write(`key ${key.id} created in ${keysPath(home)}; the secret above is not shown again\n`);
      }
      return 0;
    }
    if (action === "list") {
      if (target !== undefined) throw new UsageError(`api-key list: unexpected argument "${target}"`);
      const spend = new ApiSpendStore(ctx.store());
      const rows = readKeys(home).map((k) => ({ ...withoutHash(k), ...spentSats(spend, k.id) }));
      if (values.json) ctx.stdout.write(`${JSON.stringify({ keys: rows })}\n`);
      else ctx.stdout.write(formatKeys(rows));
      return 0;
    }
    if (action === "revoke") {
      if (!target) throw new UsageError("api-key revoke: give the key's id (see `infernet api-key list`)");
      const removed = revokeKey(home, target);
      if (!removed) throw new UsageError(`api-key revoke: no key ${target}`, { hint: "see `infernet api-key list`" });
      ctx.stderr.write(`key ${removed.id}${removed.name ? ` (${removed.name})` : ""} revoked\n`);
      return 0;
    }
    throw new UsageError(action ? `api-key: unknown action "${action}"` : "api-key: say create, list or revoke", {
      hint: "infernet api-key --help",
    });
  },
});

type KeyRow = Omit<ApiKey, "sha256"> & { spentSats: number; requests: number };

function withoutHash(k: ApiKey): Omit<ApiKey, "sha256"> {
  const { sha256: _hash, ...rest } = k;
  return rest;
}

function spentSats(spend: ApiSpendStore, id: string): { spentSats: number; requests: number } {
  const s = spend.spent(id);
  return { spentSats: s.spentMsat / 1000, requests: s.requests };
}

function formatKeys(rows: KeyRow[]): string {
  if (rows.length === 0) return "No API keys (create one with `infernet api-key create`).\n";
  const head = ["ID", "NAME", "CREATED", "RPM", "CONCURRENCY", "BUDGET", "SPENT", "REQUESTS"];
  const table = rows.map((r) => [
    r.id,
    r.name || "-",
    new Date(r.createdAt).toISOString().slice(0, 16),
    String(r.requestsPerMinute),
    String(r.concurrency),
    r.budgetSats === undefined ? "-" : `${r.budgetSats} sats`,
    `${r.spentSats} sats`,
    String(r.requests),
  ]);
  return `${formatTable(head, table)}\n`;
}
