import { updateConfigFile } from "../../config/index.ts";
import { cacheStatus } from "../../models/cache.ts";
import { type CatalogEntry, catalog, findModel, requireModel } from "../../models/catalog.ts";
import { resolveLocalModel } from "../../models/local.ts";
import type { ModelChoice } from "../../tui/state.ts";
import { errorMessage, UsageError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import type { InfernetNode } from "../node.ts";
import {
  MAX_MODEL_BODY_BYTES,
  MODELS_PATH,
  type ModelBody,
  ModelBodySchema,
  SERVE_MODEL_PATH,
  type ServedLine,
  type ServeLine,
  UNSERVE_MODEL_PATH,
  type UnserveAnswer,
} from "./models-protocol.ts";
import { ServeOperation, serveProgress } from "./models-serve.ts";
import { errorLine, ndjsonResponse } from "./ndjson.ts";

/**
 * The model manager's routes on the control server (models-protocol.ts): list the catalog, add a
 * model to what the node serves (fetching it first), remove one. After each change the served
 * catalog models are saved as the `serve` setting in INFERNET_HOME/config.json, so the next
 * `infernet start --provider` without --models serves them again.
 */
const log = logger("node:control:models");

export type ModelsRoutes = (req: Request, url: URL) => Promise<Response | undefined>;

/** The dashboard's other routes, then these (the control server's one hook for both). */
export function withModelsRoutes(dash: ModelsRoutes, node: InfernetNode, home: string): ModelsRoutes {
  const models = modelsRoutes(node, home);
  return async (req, url) => (await dash(req, url)) ?? (await models(req, url));
}

export function modelsRoutes(node: InfernetNode, home: string): ModelsRoutes {
  /** Models being fetched and loaded, by catalog name: a second request for one joins it. */
  const pending = new Map<string, ServeOperation>();
  /** Saves run one after another, each writing the served set as it is then. */
  let saving: Promise<void> = Promise.resolve();
  const save = (): Promise<void> => {
    saving = saving.then(() => saveServed(node, home));
    return saving;
  };

  return async (req, url) => {
    if (url.pathname === MODELS_PATH && req.method === "GET") return Response.json(choices(node));
    if (url.pathname === SERVE_MODEL_PATH && req.method === "POST") {
      const entry = await catalogEntryOf(req);
      if (entry instanceof Response) return entry;
      if (isServed(node, entry.name)) return ndjsonResponse<ServedLine>(req.signal, async (send) => send(served(node)));
      let operation = pending.get(entry.name);
      if (!operation || operation.stopping) {
        const created = new ServeOperation(async (signal, progress) => {
          const model = await resolveLocalModel(entry.name, {
            config: node.config,
            store: node.store,
            signal,
            onProgress: (p) => progress(serveProgress(p)),
          });
          progress({ phase: "load", doneBytes: 0, totalBytes: sizeOf(entry), bytesPerSecond: 0 });
          await node.serveModel(model, signal);
          await save();
        });
        operation = created;
        pending.set(entry.name, created);
        // Removed once settled, so a later request (after a failure or a disconnect) starts afresh.
        void created.settled.then(() => {
          if (pending.get(entry.name) === created) pending.delete(entry.name);
        });
      }
      const following = operation;
      return ndjsonResponse<ServeLine | ServedLine>(req.signal, async (send) => {
        await following.join((p) => send({ type: "progress", ...p }), req.signal);
        send(served(node));
      });
    }
    if (url.pathname === UNSERVE_MODEL_PATH && req.method === "POST") {
      const body = await readBody(req);
      if (body instanceof Response) return body;
      const name = findModel(body.name)?.name ?? body.name;
      // Removing a model that is still being added cancels adding it.
      const inFlight = pending.get(name);
      inFlight?.cancel();
      if (inFlight && !isServed(node, name)) return Response.json({ models: names(node) } satisfies UnserveAnswer);
      try {
        node.unserveModel(name);
      } catch (err) {
        return refuse(err);
      }
      await save();
      return Response.json({ models: names(node) } satisfies UnserveAnswer);
    }
    return undefined;
  };
}

/** Every catalog model: its size, whether its files are here and verified (never hashing), whether served. */
function choices(node: InfernetNode): ModelChoice[] {
  return catalog().map((entry) => ({
    name: entry.name,
    description: entry.description,
    runtime: entry.runtime,
    sizeBytes: sizeOf(entry),
    cached: entry.files.every((f) => cacheStatus(node.config, node.store, entry, f) === "verified"),
    served: isServed(node, entry.name),
  }));
}

/** The catalog entry a serve request names, or the 400 to answer. */
async function catalogEntryOf(req: Request): Promise<CatalogEntry | Response> {
  const body = await readBody(req);
  if (body instanceof Response) return body;
  try {
    return requireModel(body.name);
  } catch (err) {
    return refuse(err);
  }
}

async function readBody(req: Request): Promise<ModelBody | Response> {
  try {
    const text = await req.text();
    if (text.length > MAX_MODEL_BODY_BYTES) throw new Error(`the body is over ${MAX_MODEL_BODY_BYTES} bytes`);
    const parsed = ModelBodySchema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(parsed.error.issues[0]?.message ?? "invalid");
    return parsed.data;
  } catch (err) {
    return refuse(new UsageError(`bad model request: ${errorMessage(err)}`, { hint: 'send {"name": "<model>"}' }));
  }
}

/** Catalog models the node serves now, saved as the `serve` setting. */
async function saveServed(node: InfernetNode, home: string): Promise<void> {
  const serve = node.serving.flatMap((m) => (m.entry ? [m.entry.name] : []));
  try {
    updateConfigFile(home, { serve });
  } catch (err) {
    // The node serves the model either way; only the next start would not know.
    log.warn("could not save the models served to config.json", { err: errorMessage(err) });
  }
}

function isServed(node: InfernetNode, name: string): boolean {
  return node.serving.some((m) => m.name === name);
}

function names(node: InfernetNode): string[] {
  return node.serving.map((m) => m.name);
}

function served(node: InfernetNode): ServedLine {
  return { type: "served", models: names(node) };
}

function sizeOf(entry: CatalogEntry): number {
  return entry.files.reduce((n, f) => n + f.size, 0);
}

function refuse(err: unknown): Response {
  return Response.json(errorLine(err), { status: 400 });
}
