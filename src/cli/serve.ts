import { GatewayAccess } from "../api/access.ts";
import type { ApiModel, GatewayBackend } from "../api/server.ts";
import { startGateway } from "../api/server.ts";
import { isDownloaded } from "../models/cache.ts";
import { catalog, findModel, findModelBySha, modelFile } from "../models/catalog.ts";
import { resolveLocalModel } from "../models/local.ts";
import { type NetworkEvent, PROVIDERS_FRESH_MS } from "../node/client.ts";
import { configuredLlamaEngine } from "../node/engines.ts";
import type { PeerRow } from "../node/node.ts";
import { unitPriceMsat } from "../node/protocols/capability/messages.ts";
import type { Engine, InferenceRequest, LocalModel } from "../runtime/engine.ts";
import { ApiSpendStore } from "../store/api-spend.ts";
import { NoProviderError, UsageError } from "../util/errors.ts";
import { intFlag } from "./args.ts";
import { type CliContext, defineCommand } from "./command.ts";
import { type NetworkAccess, networkAccess } from "./network.ts";
import { applyNetworkOptions, NETWORK_OPTIONS } from "./network-options.ts";

/** The gateway's port unless --port says otherwise (Ollama's 11434, plus one). */
export const DEFAULT_API_PORT = 11_435;
const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

export const serveCommand = defineCommand({
  name: "serve",
  usage: [
    "serve [--port 11435] [--host 127.0.0.1] [--require-key] [--prefer local|network] [--bootstrap MULTIADDR]...",
  ],
  details: `An OpenAI-compatible HTTP API in front of the network: GET /v1/models, POST /v1/completions and
POST /v1/chat/completions (stream: true for server-sent events), POST /v1/embeddings, and Ollama's on the
same port: POST /api/generate and /api/chat (NDJSON streams), /api/embed, GET /api/tags and /api/version,
POST /api/show. Requests run on the network's
providers through the running node (\`infernet start\`) or a node of its own, with the same provider
choice and failover as \`infernet run\`; the x-infernet-provider header names the provider.
With --prefer local, a model downloaded here runs on this machine (the header says "local"), others
on the network; /v1/models marks the local ones.
On loopback anyone on this machine may call it (a key that is sent gets its key's limits); on any other
address, or with --require-key, every request needs an API key (\`infernet api-key create\`) as
Authorization: Bearer <key>, and it refuses to start without one.
  OPENAI_BASE_URL=http://127.0.0.1:11435/v1 any-openai-app`,
  options: {
    port: {
      type: "string",
      value: "N",
      description: `Port to listen on (default ${DEFAULT_API_PORT}; 0 picks a free one)`,
    },
    host: {
      type: "string",
      value: "ADDR",
      description: "Address to listen on (default 127.0.0.1; another address needs API keys)",
    },
    "require-key": { type: "boolean", description: "Require an API key on loopback too" },
    prefer: {
      type: "string",
      value: "WHERE",
      description: "local: run models downloaded here on this machine; network (default): on providers",
    },
    ...NETWORK_OPTIONS,
  },
  async run(ctx, { values, positionals }) {
    if (positionals.length) throw new UsageError(`serve: unexpected argument "${positionals[0]}"`);
    const port = intFlag("serve", "port", values.port, 0, 65_535) ?? DEFAULT_API_PORT;
    const hostname = values.host ?? "127.0.0.1";
    const requireKey = Boolean(values["require-key"]) || !LOOPBACK.has(hostname);
    const prefer = preferFlag("serve", values.prefer);
    applyNetworkOptions(ctx, values);
    // Refused before the network is joined: a listener that would be open to everyone never starts.
    const access = gatewayAccess(ctx, requireKey);
    if (requireKey && access.keyCount() === 0) {
      throw new UsageError(
        `serve: ${LOOPBACK.has(hostname) ? "--require-key" : `--host ${hostname} (not loopback)`} needs an API key, and there is none`,
        { hint: "create one with `infernet api-key create`, or listen on 127.0.0.1" },
      );
    }
    // With --prefer local it serves what is downloaded here even with no network at all.
    await using network = await networkAccess(ctx);
    if (!network && prefer !== "local") {
      throw new NoProviderError("not connected to any peer", {
        hint: "start a node (`infernet start`), give --bootstrap <multiaddr>, or serve local models with --prefer local",
      });
    }
    const server = startGateway({
      hostname,
      port,
      backend: gatewayBackend(network, prefer === "local" ? downloadedModels(ctx) : undefined),
      access,
      defaultMaxTokens: ctx.config().maxTokens,
    });
    const shown = hostname.includes(":") ? `[${hostname}]` : hostname;
    ctx.stdout.write(
      `${JSON.stringify({ event: "listening", url: `http://${shown}:${server.port}/v1`, via: network?.via ?? "none", requireKey })}\n`,
    );
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      ctx.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    await server.stop(true);
    return 0;
  },
});

/** Keys and spend for a gateway on this node's home. */
export function gatewayAccess(ctx: CliContext, requireKey: boolean): GatewayAccess {
  return new GatewayAccess({ home: ctx.config().home, requireKey, spend: new ApiSpendStore(ctx.store()) });
}

/**
 * Models the gateway may run here instead of on the network (`--prefer local`): the engine, the
 * model's local file when it has one, and the name the provider header gives such a run.
 */
export interface LocalRuns {
  model(sha256: string, signal: AbortSignal): Promise<LocalModel | undefined>;
  engine(): Promise<Engine>;
  self: string;
}

/** `--prefer`: where a request runs when both are possible. */
export function preferFlag(command: string, raw: string | undefined): "local" | "network" {
  if (raw === undefined || raw === "network") return "network";
  if (raw === "local") return "local";
  throw new UsageError(`${command}: --prefer is local or network, not "${raw}"`);
}

/** Runs on this machine's engine, as a run on the network reads: a provider event (free), then the engine's. */
async function* runHere(
  local: LocalRuns,
  model: LocalModel,
  request: InferenceRequest,
  signal: AbortSignal,
): AsyncGenerator<NetworkEvent> {
  yield { type: "provider", peerId: local.self, attempt: 1, resumedAt: 0, satsPer1kTokens: 0 };
  yield* (await local.engine()).run(model, request, { signal });
}

/** The catalog text models downloaded here, run with an engine of this process (`infernet serve --prefer local`). */
export function downloadedModels(ctx: CliContext): LocalRuns {
  let engine: Promise<Engine> | undefined;
  const resolved = new Map<string, LocalModel>();
  return {
    self: "local",
    async model(sha256, signal) {
      const entry = findModelBySha(sha256);
      const config = ctx.config();
      if (entry?.runtime !== "llama" || !isDownloaded(config, ctx.store(), entry)) return undefined;
      const known =
        resolved.get(sha256) ?? (await resolveLocalModel(entry.name, { config, store: ctx.store(), signal }));
      resolved.set(sha256, known);
      return known;
    },
    engine: () => {
      engine ??= configuredLlamaEngine(ctx.config(), ctx.store(), ctx.signal);
      return engine;
    },
  };
}

/** The network as the gateway needs it: catalog text models, who serves them, and runs (here first with `local`). */
export function gatewayBackend(
  access: Pick<NetworkAccess, "node" | "control" | "run"> | undefined,
  local?: LocalRuns,
): GatewayBackend {
  const text = () => catalog().filter((e) => e.runtime === "llama");
  return {
    model(name) {
      const entry = findModel(name);
      return entry && entry.runtime === "llama" ? { id: entry.name, sha256: modelFile(entry).sha256 } : undefined;
    },
    async models(signal) {
      let rows: PeerRow[] = [];
      if (access?.control) rows = await access.control.peers(signal);
      else if (access?.node) {
        const node = access.node;
        const lookup = { signal, maxAgeMs: PROVIDERS_FRESH_MS };
        await Promise.all(
          text().map((m) => node.capability.knownProviders(modelFile(m).sha256, lookup).catch(() => [])),
        );
        rows = await node.peers(signal);
      }
      const out: ApiModel[] = [];
      for (const entry of text()) {
        const sha = modelFile(entry).sha256;
        const serving = rows.filter((r) => r.record?.models.some((m) => m.sha256 === sha));
        const here = (await local?.model(sha, signal)) !== undefined;
        if (serving.length === 0 && !here) continue;
        const prices = serving.map((r) => (r.record ? unitPriceMsat(r.record, sha) : 0));
        out.push({
          id: entry.name,
          sha256: sha,
          providers: serving.length,
          satsPer1kTokens: serving.length ? Math.min(...prices) : undefined,
          bytes: modelFile(entry).size,
          local: here,
        });
      }
      return out;
    },
    run(model, request, signal) {
      // The network's events as they come (no generator in between) unless this machine may run it.
      if (!local && access) return access.run(model, request, { signal });
      return (async function* () {
        const here = await local?.model(model.sha256, signal);
        if (local && here) yield* runHere(local, here, request, signal);
        else if (access) yield* access.run(model, request, { signal });
        else throw new NoProviderError(`${model.name} is not downloaded here, and this gateway has no network`);
      })();
    },
  };
}
