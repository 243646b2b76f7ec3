import type { NetworkEvent } from "../node/client.ts";
import type { GenerateRequest } from "../runtime/engine.ts";
import { errorMessage, InfernetError, NoProviderError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import {
  ApiError,
  chatRequest,
  chatToGenerate,
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
}

export interface GatewayBackend {
  /** The text models the network serves now. */
  models(signal: AbortSignal): Promise<ApiModel[]>;
  /** The catalog's text model of this name, or undefined. */
  model(name: string): { id: string; sha256: string } | undefined;
  run(
    model: { name: string; sha256: string },
    request: GenerateRequest,
    signal: AbortSignal,
  ): AsyncIterable<NetworkEvent>;
}

export interface GatewayOptions {
  hostname: string;
  port: number;
  backend: GatewayBackend;
}

/** Header naming the provider that served a request. */
export const PROVIDER_HEADER = "x-infernet-provider";

export function startGateway(options: GatewayOptions): ReturnType<typeof Bun.serve> {
  const { backend } = options;
  return Bun.serve({
    hostname: options.hostname,
    port: options.port,
    maxRequestBodySize: MAX_BODY_BYTES,
    // A generation's stream may be quiet while a provider fails over; the deadline is the client's.
    idleTimeout: 0,
    async fetch(req) {
      try {
        return await route(req, backend);
      } catch (err) {
        return errorResponse(err);
      }
    },
  });
}

async function route(req: Request, backend: GatewayBackend): Promise<Response> {
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
    return generate(req, backend, body, completionToGenerate(body), "text");
  }
  if (req.method === "POST" && path === "/v1/chat/completions") {
    const body = parseBody(chatRequest, await readJson(req));
    return generate(req, backend, body, chatToGenerate(body), "chat");
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
  stream?: boolean | null | undefined;
  stream_options?: { include_usage?: boolean | undefined } | null | undefined;
}

async function generate(
  req: Request,
  backend: GatewayBackend,
  asked: ResponseOptions,
  request: Omit<GenerateRequest, "kind">,
  kind: "text" | "chat",
): Promise<Response> {
  const name = asked.model;
  const stream = asked.stream;
  const includeUsage = asked.stream_options?.include_usage;
  const model = backend.model(name);
  if (!model) {
    throw new ApiError(404, `unknown model ${name}`, "not_found_error", "model", "model_not_found");
  }
  const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${crypto.randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const events = backend
    .run({ name: model.id, sha256: model.sha256 }, { kind: "generate", ...request }, req.signal)
    [Symbol.asyncIterator]();
  // The provider is known before the first token: it goes in a header.
  let first = await events.next();
  let provider: string | undefined;
  while (!first.done && first.value.type === "provider") {
    provider = first.value.peerId;
    first = await events.next();
  }
  const headers: Record<string, string> = provider ? { [PROVIDER_HEADER]: provider } : {};
  const object = kind === "chat" ? "chat.completion" : "text_completion";
  const choice = (text: string | undefined, finish: "stop" | "length" | null) =>
    kind === "chat"
      ? {
          index: 0,
          [stream ? "delta" : "message"]: text === undefined ? {} : { role: "assistant", content: text },
          finish_reason: finish,
        }
      : { index: 0, text: text ?? "", logprobs: null, finish_reason: finish };

  if (!stream) {
    let text = "";
    let done: Extract<NetworkEvent, { type: "done" }> | undefined;
    for (let e = first; !e.done; e = await events.next()) {
      if (e.value.type === "token") text += e.value.text;
      else if (e.value.type === "done") done = e.value;
    }
    if (!done) throw new ApiError(502, "the generation ended without a result", "server_error");
    return json(
      {
        id,
        object,
        created,
        model: model.id,
        choices: [choice(text, finishReason(done.finishReason))],
        usage: usageOf(done.usage.inputTokens, done.usage.outputTokens),
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
  const encoder = new TextEncoder();
  let pending: IteratorResult<NetworkEvent> | undefined = first;
  const body = new ReadableStream<Uint8Array>({
    // Each pull enqueues at least one event (a pull that enqueues nothing is not called again):
    // events with nothing to send (a failover's provider change, an empty token) are skipped.
    async pull(controller) {
      try {
        for (;;) {
          const e = pending ?? (await events.next());
          pending = undefined;
          if (e.done) {
            controller.enqueue(encoder.encode(sse("[DONE]")));
            controller.close();
            return;
          }
          const event = e.value;
          if (event.type === "token" && event.text !== "") {
            controller.enqueue(encoder.encode(chunk([choice(event.text, null)])));
            return;
          }
          if (event.type === "done") {
            const fin =
              kind === "chat"
                ? { index: 0, delta: {}, finish_reason: finishReason(event.finishReason) }
                : choice("", finishReason(event.finishReason));
            controller.enqueue(encoder.encode(chunk([fin])));
            if (includeUsage) {
              controller.enqueue(
                encoder.encode(chunk([], { usage: usageOf(event.usage.inputTokens, event.usage.outputTokens) })),
              );
            }
            return;
          }
        }
      } catch (err) {
        // Headers are gone: the error is the stream's last event, as OpenAI's servers send it.
        log.warn("stream failed", { err: errorMessage(err) });
        controller.enqueue(encoder.encode(sse(toApiError(err).body())));
        controller.close();
      }
    },
    async cancel() {
      await events.return?.();
    },
  });
  return new Response(body, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache", ...headers },
  });
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof NoProviderError) return new ApiError(503, err.message, "service_unavailable", null, "no_provider");
  if (err instanceof InfernetError) return new ApiError(502, err.message, "server_error");
  return new ApiError(500, errorMessage(err), "server_error");
}

function errorResponse(err: unknown): Response {
  const e = toApiError(err);
  if (e.status >= 500) log.warn("request failed", { status: e.status, err: e.message });
  return json(e.body(), e.status);
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}
