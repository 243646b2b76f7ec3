import type { GenerateRequest } from "../runtime/engine.ts";
import { errorMessage, InfernetError, NoProviderError, ProvidersBusyError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import type { GatewayAccess, Ticket } from "./access.ts";
import { type Embedded, embedTexts } from "./embeddings.ts";
import { type Generation, type Runner, startGenerations } from "./generation.ts";
import type { ApiKey } from "./keys.ts";
import { ApiError, MAX_BODY_BYTES } from "./openai.ts";

/**
 * What both dialects' routes share: the gateway's options and backend, admission and start of
 * generations, model lookup, bounded JSON bodies, and errors in either dialect's shape.
 */
const log = logger("api");

/** A model the gateway can name: a catalog text model, and who serves it now. */
export interface ApiModel {
  id: string;
  sha256: string;
  providers: number;
  /** Lowest price among them, satoshis per 1,000 tokens. */
  satsPer1kTokens: number | undefined;
  /** The model file's size in bytes. */
  bytes: number;
  /** Runs on this machine (`--prefer local`). */
  local?: boolean;
}

export interface GatewayBackend {
  /** The text models the network serves now. */
  models(signal: AbortSignal): Promise<ApiModel[]>;
  /** The catalog's text model of this name, or undefined. */
  model(name: string): { id: string; sha256: string } | undefined;
  run: Runner;
}

export interface GatewayOptions {
  hostname: string;
  port: number;
  backend: GatewayBackend;
  /** Keys, limits and spend (see access.ts). */
  access: GatewayAccess;
  /** Tokens generated when a request does not say (the node's `maxTokens`). */
  defaultMaxTokens: number;
}

/** What a route needs: the options, and the request's key once authenticated. */
export interface Routed extends GatewayOptions {
  key: ApiKey | undefined;
}

/**
 * Admits and starts the `n` generations of one request: the request's token limit made explicit (the
 * node's default when it gave none), one ticket each.
 */
export async function launch(
  req: Request,
  o: Routed,
  model: { id: string; sha256: string },
  request: Omit<GenerateRequest, "kind">,
  n = 1,
): Promise<Generation[]> {
  const tickets: Ticket[] = [];
  try {
    for (let i = 0; i < n; i++) tickets.push(o.access.admit(o.key));
  } catch (err) {
    for (const t of tickets) t[Symbol.dispose]();
    throw err;
  }
  const bounded = { ...request, maxTokens: request.maxTokens ?? o.defaultMaxTokens };
  return startGenerations(o.backend.run, model, bounded, req.signal, tickets);
}

/** The catalog text model a request names, or 404. */
export function knownModel(o: Routed, name: string): { id: string; sha256: string } {
  const model = o.backend.model(name);
  if (!model) throw new ApiError(404, `unknown model ${name}`, "not_found_error", "model", "model_not_found");
  return model;
}

/** Admits and runs one embedding request. */
export function embed(
  req: Request,
  o: Routed,
  model: { id: string; sha256: string },
  texts: string[],
): Promise<Embedded> {
  return embedTexts(o.backend.run, model, texts, req.signal, o.access.admit(o.key));
}

export async function readJson(req: Request): Promise<unknown> {
  const text = await req.text();
  if (text.length > MAX_BODY_BYTES) throw new ApiError(413, `the body is over ${MAX_BODY_BYTES} bytes`);
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, "the body is not valid JSON");
  }
}

export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ProvidersBusyError) {
    return new ApiError(503, err.message, "service_unavailable", null, "providers_busy");
  }
  if (err instanceof NoProviderError) return new ApiError(503, err.message, "service_unavailable", null, "no_provider");
  if (err instanceof InfernetError) return new ApiError(502, err.message, "server_error");
  return new ApiError(500, errorMessage(err), "server_error");
}

/** An error as the dialect sends it: OpenAI's object, or Ollama's `{"error": "..."}`. */
export function errorResponse(err: unknown, ollama = false): Response {
  const e = toApiError(err);
  if (e.status >= 500) log.warn("request failed", { status: e.status, err: e.message });
  const retry: Record<string, string> = e.status === 429 || e.status === 503 ? { "retry-after": "1" } : {};
  return json(ollama ? { error: e.message } : e.body(), e.status, retry);
}

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}
