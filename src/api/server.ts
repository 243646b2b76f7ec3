import type { GenerateRequest } from "../runtime/engine.ts";
import { errorMessage, InfernetError, NoProviderError, ProvidersBusyError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import { VERSION } from "../version.ts";
import type { GatewayAccess, Ticket } from "./access.ts";
import {
  type Embedded,
  embeddingsRequest,
  embedTexts,
  encodeVector,
  ollamaEmbedBody,
  ollamaEmbeddingsBody,
} from "./embeddings.ts";
import {
  collect,
  type Done,
  type Generation,
  type Logprobs,
  providerHeaders,
  type Runner,
  startGenerations,
  streamBody,
} from "./generation.ts";
import type { ApiKey } from "./keys.ts";
import {
  chatBody,
  finalCounts,
  generateBody,
  ndjson,
  type OllamaChat,
  type OllamaGenerate,
  ollamaChat,
  ollamaGenerate,
  showBody,
} from "./ollama.ts";
import {
  ApiError,
  chatLogprobs,
  chatRequest,
  chatToGenerate,
  completionLogprobs,
  completionRequest,
  completionToGenerate,
  finishReason,
  MAX_BODY_BYTES,
  parseBody,
  sse,
  usageOf,
} from "./openai.ts";

/**
 * The OpenAI-compatible HTTP gateway (Bun.serve): /v1/models, /v1/completions and
 * /v1/chat/completions, streaming as server-sent events ending in `data: [DONE]`. Requests run
 * through `run` (the network's client path: provider choice and failover, see node/client.ts); a
 * client that disconnects aborts the generation. Which provider served is in the
 * `x-infernet-provider` header.
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
interface Routed extends GatewayOptions {
  key: ApiKey | undefined;
}

export function startGateway(options: GatewayOptions): ReturnType<typeof Bun.serve> {
  return Bun.serve({
    hostname: options.hostname,
    port: options.port,
    maxRequestBodySize: MAX_BODY_BYTES,
    // A generation's stream may be quiet while a provider fails over; GENERATION_DEADLINE_MS bounds it.
    idleTimeout: 0,
    async fetch(req) {
      const ollama = new URL(req.url).pathname.startsWith("/api/");
      try {
        const routed = { ...options, key: options.access.authenticate(req) };
        return await (ollama ? ollamaRoute(req, routed) : route(req, routed));
      } catch (err) {
        return errorResponse(err, ollama);
      }
    },
  });
}

/**
 * Admits and starts the `n` generations of one request: the request's token limit made explicit (the
 * node's default when it gave none), one ticket each.
 */
async function launch(
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
function knownModel(o: Routed, name: string): { id: string; sha256: string } {
  const model = o.backend.model(name);
  if (!model) throw new ApiError(404, `unknown model ${name}`, "not_found_error", "model", "model_not_found");
  return model;
}

/** Admits and runs one embedding request. */
function embed(req: Request, o: Routed, model: { id: string; sha256: string }, texts: string[]): Promise<Embedded> {
  return embedTexts(o.backend.run, model, texts, req.signal, o.access.admit(o.key));
}

async function route(req: Request, o: Routed): Promise<Response> {
  const { backend } = o;
  const path = new URL(req.url).pathname.replace(/\/+$/, "");
  if (req.method === "GET" && path === "/v1/models") {
    const data = (await backend.models(req.signal)).map(modelObject);
    return json({ object: "list", data });
  }
  if (req.method === "GET" && path.startsWith("/v1/models/")) {
    const id = decodeURIComponent(path.slice("/v1/models/".length));
    const found = (await backend.models(req.signal)).find((m) => m.id === id);
    if (!found)
      throw new ApiError(
        404,
        `model ${id} is not served on the network`,
        "not_found_error",
        "model",
        "model_not_found",
      );
    return json(modelObject(found));
  }
  if (req.method === "POST" && path === "/v1/completions") {
    const body = parseBody(completionRequest, await readJson(req));
    return generate(req, o, body, completionToGenerate(body), "text");
  }
  if (req.method === "POST" && path === "/v1/chat/completions") {
    const body = parseBody(chatRequest, await readJson(req));
    return generate(req, o, body, chatToGenerate(body), "chat");
  }
  if (req.method === "POST" && path === "/v1/embeddings") {
    const body = parseBody(embeddingsRequest, await readJson(req));
    const model = knownModel(o, body.model);
    const texts = typeof body.input === "string" ? [body.input] : body.input;
    const done = await embed(req, o, model, texts);
    const width = done.vectors[0]?.length ?? 0;
    if (body.dimensions && body.dimensions !== width) {
      throw new ApiError(
        400,
        `dimensions: ${model.id} gives ${width}-dimensional vectors`,
        "invalid_request_error",
        "dimensions",
      );
    }
    return json(
      {
        object: "list",
        data: done.vectors.map((v, index) => ({
          object: "embedding",
          index,
          embedding: encodeVector(v, body.encoding_format),
        })),
        model: model.id,
        usage: { prompt_tokens: done.usage.inputTokens, total_tokens: done.usage.inputTokens },
      },
      200,
      done.headers,
    );
  }
  throw new ApiError(404, `no route ${req.method} ${path}`, "not_found_error");
}

function modelObject(m: ApiModel) {
  return {
    id: m.id,
    object: "model",
    created: 0,
    owned_by: "infernet",
    providers: m.providers,
    ...(m.satsPer1kTokens !== undefined ? { sats_per_1k_tokens: m.satsPer1kTokens } : {}),
    ...(m.local ? { local: true } : {}),
  };
}

async function readJson(req: Request): Promise<unknown> {
  const text = await req.text();
  if (text.length > MAX_BODY_BYTES) throw new ApiError(413, `the body is over ${MAX_BODY_BYTES} bytes`);
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, "the body is not valid JSON");
  }
}

/** What a completion or chat body says about the response (not the generation). */
interface ResponseOptions {
  model: string;
  n?: number | null | undefined;
  stream?: boolean | null | undefined;
  stream_options?: { include_usage?: boolean | undefined } | null | undefined;
}

async function generate(
  req: Request,
  o: Routed,
  asked: ResponseOptions,
  request: Omit<GenerateRequest, "kind">,
  kind: "text" | "chat",
): Promise<Response> {
  const name = asked.model;
  const stream = asked.stream;
  const includeUsage = asked.stream_options?.include_usage;
  const model = o.backend.model(name);
  if (!model) {
    throw new ApiError(404, `unknown model ${name}`, "not_found_error", "model", "model_not_found");
  }
  const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${crypto.randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const gs = await launch(req, o, model, request, asked.n ?? 1);
  const headers = providerHeaders(gs);
  const choice = (index: number, text: string | undefined, finish: "stop" | "length" | null, logprobs?: Logprobs) =>
    kind === "chat"
      ? {
          index,
          [stream ? "delta" : "message"]: text === undefined ? {} : { role: "assistant", content: text },
          logprobs: logprobs ? chatLogprobs(logprobs) : null,
          finish_reason: finish,
        }
      : { index, text: text ?? "", logprobs: logprobs ? completionLogprobs(logprobs) : null, finish_reason: finish };

  if (!stream) {
    const results = await Promise.all(gs.map(collect));
    // The prompt is read once per choice; OpenAI counts it once.
    const usage = usageOf(
      results[0]?.done.usage.inputTokens ?? 0,
      results.reduce((n, r) => n + r.done.usage.outputTokens, 0),
    );
    return json(
      {
        id,
        object: kind === "chat" ? "chat.completion" : "text_completion",
        created,
        model: model.id,
        choices: results.map((r, i) => choice(i, r.text, finishReason(r.done.finishReason), r.logprobs)),
        usage,
      },
      200,
      headers,
    );
  }

  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    sse({
      id,
      object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
      created,
      model: model.id,
      choices,
      ...extra,
    });
  // A token's chunk differs from the last only in its text: the rest is serialised once.
  const head = JSON.stringify({
    id,
    object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
    created,
    model: model.id,
  }).slice(0, -1);
  const tokenChunk = (index: number, text: string) =>
    `data: ${head},"choices":[${JSON.stringify(choice(index, text, null))}]}\n\n`;
  const finished: Done[] = [];
  const body = streamBody(gs, {
    token: (text, index) => [tokenChunk(index, text)],
    // Streamed, a choice's log-probabilities come in one chunk after its text (clients concatenate them).
    logprobs: (tokens, index) => [chunk([choice(index, kind === "chat" ? undefined : "", null, tokens)])],
    done: (event, index) => {
      finished.push(event);
      const finish = finishReason(event.finishReason);
      const fin = kind === "chat" ? { index, delta: {}, finish_reason: finish } : choice(index, "", finish);
      if (finished.length < gs.length || !includeUsage) return [chunk([fin])];
      const usage = usageOf(
        finished[0]?.usage.inputTokens ?? 0,
        finished.reduce((n, e) => n + e.usage.outputTokens, 0),
      );
      return [chunk([fin]), chunk([], { usage })];
    },
    close: () => [sse("[DONE]")],
    error: (err) => sse(toApiError(err).body()),
  });
  return new Response(body, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache", ...headers },
  });
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ProvidersBusyError) {
    return new ApiError(503, err.message, "service_unavailable", null, "providers_busy");
  }
  if (err instanceof NoProviderError) return new ApiError(503, err.message, "service_unavailable", null, "no_provider");
  if (err instanceof InfernetError) return new ApiError(502, err.message, "server_error");
  return new ApiError(500, errorMessage(err), "server_error");
}

/** An error as the dialect sends it: OpenAI's object, or Ollama's `{"error": "..."}`. */
function errorResponse(err: unknown, ollama = false): Response {
  const e = toApiError(err);
  if (e.status >= 500) log.warn("request failed", { status: e.status, err: e.message });
  const retry: Record<string, string> = e.status === 429 || e.status === 503 ? { "retry-after": "1" } : {};
  return json(ollama ? { error: e.message } : e.body(), e.status, retry);
}

async function ollamaRoute(req: Request, o: Routed): Promise<Response> {
  const { backend } = o;
  const path = new URL(req.url).pathname.replace(/\/+$/, "");
  if (req.method === "GET" && path === "/api/version") return json({ version: VERSION });
  if (req.method === "GET" && path === "/api/tags") {
    const models = (await backend.models(req.signal)).map(ollamaModel);
    return json({ models });
  }
  if (req.method === "POST" && path === "/api/show") {
    const body = parseBody(showBody, await readJson(req));
    const name = body.model ?? body.name;
    const found = (await backend.models(req.signal)).find((m) => m.id === name);
    if (!found) throw new ApiError(404, `model '${name}' not found`, "not_found_error");
    const { details } = ollamaModel(found);
    return json({
      details,
      model_info: { "infernet.providers": found.providers },
      capabilities: ["completion", "embedding"],
    });
  }
  if (req.method === "POST" && path === "/api/embed") {
    const body = parseBody(ollamaEmbedBody, await readJson(req));
    const started = performance.now();
    const model = knownModel(o, body.model);
    const done = await embed(req, o, model, typeof body.input === "string" ? [body.input] : body.input);
    return json(
      {
        model: model.id,
        embeddings: done.vectors.map((v) => Array.from(v)),
        total_duration: Math.round((performance.now() - started) * 1e6),
        prompt_eval_count: done.usage.inputTokens,
      },
      200,
      done.headers,
    );
  }
  if (req.method === "POST" && path === "/api/embeddings") {
    const body = parseBody(ollamaEmbeddingsBody, await readJson(req));
    const done = await embed(req, o, knownModel(o, body.model), [body.prompt]);
    return json({ embedding: Array.from(done.vectors[0] ?? []) }, 200, done.headers);
  }
  if (req.method === "POST" && (path === "/api/generate" || path === "/api/chat")) {
    const chat = path === "/api/chat";
    const body = chat ? parseBody(chatBody, await readJson(req)) : parseBody(generateBody, await readJson(req));
    const model = backend.model(body.model);
    if (!model) throw new ApiError(404, `model '${body.model}' not found`, "not_found_error");
    const request = chat ? ollamaChat(body as OllamaChat) : ollamaGenerate(body as OllamaGenerate);
    const started = performance.now();
    const [g] = await launch(req, o, model, request);
    if (!g) throw new ApiError(500, "no generation started", "server_error");
    const frame = (text: string, done: boolean) => ({
      model: model.id,
      created_at: new Date().toISOString(),
      ...(chat ? { message: { role: "assistant", content: text } } : { response: text }),
      done,
    });
    const final = (event: Done) => ({
      ...frame("", true),
      done_reason: finishReason(event.finishReason),
      ...finalCounts(event.usage, performance.now() - started),
    });
    if (body.stream === false) {
      const { text, done } = await collect(g);
      return json({ ...final(done), ...frame(text, true) }, 200, g.headers);
    }
    const stream = streamBody([g], {
      token: (text) => [ndjson(frame(text, false))],
      done: (event) => [ndjson(final(event))],
      close: () => [],
      error: (err) => ndjson({ error: toApiError(err).message }),
    });
    return new Response(stream, { headers: { "content-type": "application/x-ndjson", ...g.headers } });
  }
  throw new ApiError(404, `no route ${req.method} ${path}`, "not_found_error");
}

function ollamaModel(m: ApiModel) {
  return {
    name: m.id,
    model: m.id,
    modified_at: new Date(0).toISOString(),
    size: m.bytes,
    digest: m.sha256,
    details: { format: "gguf", family: "llama", families: ["llama"], parameter_size: "", quantization_level: "" },
  };
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}
