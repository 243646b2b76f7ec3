import { z } from "zod";
import type { GenerateRequest } from "../runtime/engine.ts";

/**
 * The OpenAI wire format this gateway speaks: requests parsed and bounded here, responses and
 * server-sent-event chunks built here, errors in OpenAI's JSON shape. Nothing here touches the network;
 * `server.ts` routes the parsed requests.
 */

/** Largest request body read, in bytes. */
export const MAX_BODY_BYTES = 1_000_000;
/** Largest `max_tokens` accepted (the engines cap it further by their context). */
export const MAX_COMPLETION_TOKENS = 8_192;
/** Largest prompt, in characters (a token is at least one character). */
export const MAX_PROMPT_CHARS = 200_000;
/** Stop strings per request, as OpenAI allows. */
export const MAX_STOP_STRINGS = 4;

export type ApiErrorType = "invalid_request_error" | "not_found_error" | "server_error" | "service_unavailable";

/** An error with the HTTP status and OpenAI's `{error: {message, type, param, code}}` body. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const stop = z.union([z.string().min(1), z.array(z.string().min(1)).max(MAX_STOP_STRINGS)]).nullish();

/** Fields shared by /v1/completions and /v1/chat/completions. */
const common = {
  model: z.string().min(1),
  max_tokens: z.number().int().min(1).max(MAX_COMPLETION_TOKENS).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .nullish(),
  stop,
  n: z.literal(1).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  user: z.string().max(256).nullish(),
};

export const completionRequest = z.object({
  ...common,
  prompt: z.string().max(MAX_PROMPT_CHARS),
});

const message = z.object({
  role: z.enum(["system", "developer", "user", "assistant"]),
  content: z.string().max(MAX_PROMPT_CHARS),
});

export const chatRequest = z.object({
  ...common,
  messages: z.array(message).min(1).max(64),
  max_completion_tokens: z.number().int().min(1).max(MAX_COMPLETION_TOKENS).nullish(),
});

export type CompletionRequest = z.infer<typeof completionRequest>;
export type ChatRequest = z.infer<typeof chatRequest>;

/** Parses a body against a schema; the first problem becomes a 400 naming its field. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const param = issue?.path.join(".") || null;
  throw new ApiError(400, `${param ?? "body"}: ${issue?.message ?? "invalid request"}`, "invalid_request_error", param);
}

function sampling(r: CompletionRequest | ChatRequest): Omit<GenerateRequest, "kind" | "prompt"> {
  const stops = r.stop === undefined || r.stop === null ? [] : typeof r.stop === "string" ? [r.stop] : r.stop;
  return {
    ...(r.temperature !== undefined && r.temperature !== null ? { temperature: r.temperature } : {}),
    ...(r.top_p !== undefined && r.top_p !== null ? { topP: r.top_p } : {}),
    ...(r.seed !== undefined && r.seed !== null ? { seed: r.seed } : {}),
    ...(stops.length ? { stop: stops } : {}),
  };
}

/** A completion: the prompt continued as given (no chat template), like `infernet run --raw`. */
export function completionToGenerate(r: CompletionRequest): Omit<GenerateRequest, "kind"> {
  return {
    prompt: r.prompt,
    chat: false,
    ...sampling(r),
    ...(r.max_tokens ? { maxTokens: r.max_tokens } : {}),
  };
}

/**
 * A chat: system (and developer) messages become the system prompt and the user's message the prompt,
 * formatted with the model's chat template, exactly as `infernet run --chat --system ...` formats them.
 * One user turn for now: a request carrying an earlier exchange is refused rather than flattened into
 * something the model was not asked.
 */
export function chatToGenerate(r: ChatRequest): Omit<GenerateRequest, "kind"> {
  const system = r.messages.filter((m) => m.role === "system" || m.role === "developer").map((m) => m.content);
  const turns = r.messages.filter((m) => m.role === "user" || m.role === "assistant");
  if (turns.length !== 1 || turns[0]?.role !== "user") {
    throw new ApiError(
      400,
      "messages: one user message (after any system messages) is supported; earlier turns are not yet",
      "invalid_request_error",
      "messages",
    );
  }
  const maxTokens = r.max_completion_tokens ?? r.max_tokens;
  return {
    prompt: turns[0].content,
    chat: true,
    ...(system.length ? { system: system.join("\n\n") } : {}),
    ...sampling(r),
    ...(maxTokens ? { maxTokens } : {}),
  };
}

export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usageOf(inputTokens: number, outputTokens: number): TokenUsage {
  return { prompt_tokens: inputTokens, completion_tokens: outputTokens, total_tokens: inputTokens + outputTokens };
}

/** `finish_reason` as OpenAI names it. */
export function finishReason(reason: "stop" | "length" | "aborted"): "stop" | "length" {
  return reason === "length" ? "length" : "stop";
}

/** One server-sent event carrying a JSON chunk, or the closing `[DONE]`. */
export function sse(data: unknown): string {
  return `data: ${data === "[DONE]" ? "[DONE]" : JSON.stringify(data)}\n\n`;
}
