import type { GenerateRequest } from "../runtime/engine.ts";
import { embeddingsRequest, encodeVector } from "./embeddings.ts";
import { collect, type Done, type Logprobs, providerHeaders, streamBody } from "./generation.ts";
import { ollamaRoute } from "./ollama-routes.ts";
import {
  ApiError,
  chatLogprobs,
  chatRequest,
  chatToGenerate,
  completionLogprobs,
  completionRequest,
  completionToGenerate,
  finishReason,
  forcedTool,
  MAX_BODY_BYTES,
  parseBody,
  sse,
  usageOf,
} from "./openai.ts";
import {
  type ApiModel,
  embed,
  errorResponse,
  type GatewayOptions,
  json,
  knownModel,
  launch,
  type Routed,
  readJson,
  toApiError,
} from "./routing.ts";

export type { ApiModel, GatewayBackend, GatewayOptions } from "./routing.ts";

/**
 * The OpenAI-compatible HTTP gateway (Bun.serve): /v1/models, /v1/completions and
 * /v1/chat/completions, streaming as server-sent events ending in `data: [DONE]`, and /v1/embeddings;
 * Ollama's `/api/...` on the same port (ollama-routes.ts). Every request is authenticated first
 * (access.ts); generations run through the backend (the network's client path: provider choice and
 * failover, see node/client.ts, or this machine with --prefer local); a client that disconnects aborts
 * the generation. Which provider served is in the `x-infernet-provider` header.
 */

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
    return generate(req, o, body, chatToGenerate(body), "chat", forcedTool(body)?.name);
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
  /** The function the chat must call: its text is the call's arguments (see forcedTool). */
  tool?: string,
): Promise<Response> {
  const name = asked.model;
  const stream = asked.stream;
  const includeUsage = asked.stream_options?.include_usage;
  const model = knownModel(o, name);
  const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${crypto.randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const gs = await launch(req, o, model, request, asked.n ?? 1);
  const headers = providerHeaders(gs);
  const callIds = gs.map(() => `call_${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`);
  const calling = new Set<number>();
  /** A chat message or delta: the text, or for a forced tool the call (streamed: its id and name first). */
  const message = (index: number, text: string | undefined) => {
    if (text === undefined) return {};
    if (!tool) return { role: "assistant", content: text };
    const call = { id: callIds[index], type: "function", function: { name: tool, arguments: text } };
    if (!stream) return { role: "assistant", content: null, tool_calls: [call] };
    if (calling.has(index)) return { tool_calls: [{ index: 0, function: { arguments: text } }] };
    calling.add(index);
    return { role: "assistant", tool_calls: [{ index: 0, ...call }] };
  };
  const reasonOf = (reason: "stop" | "length" | null) => (tool && reason === "stop" ? "tool_calls" : reason);
  const choice = (index: number, text: string | undefined, finish: "stop" | "length" | null, logprobs?: Logprobs) =>
    kind === "chat"
      ? {
          index,
          [stream ? "delta" : "message"]: message(index, text),
          logprobs: logprobs ? chatLogprobs(logprobs) : null,
          finish_reason: reasonOf(finish),
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
      const fin = kind === "chat" ? { index, delta: {}, finish_reason: reasonOf(finish) } : choice(index, "", finish);
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
