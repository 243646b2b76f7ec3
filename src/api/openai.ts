import { z } from "zod";
import { type GenerateRequest, MAX_TOP_LOGPROBS, type OutputFormat, type TokenLogprob } from "../runtime/engine.ts";

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
/** Messages in one chat request. */
export const MAX_CHAT_MESSAGES = 256;
/** Most completions one request may ask for (`n`); each runs as its own generation. */
export const MAX_CHOICES = 8;

export type ApiErrorType =
  | "invalid_request_error"
  | "not_found_error"
  | "rate_limit_error"
  | "insufficient_quota"
  | "server_error"
  | "service_unavailable"
  | "timeout";

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
  n: z.number().int().min(1).max(MAX_CHOICES).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  user: z.string().max(256).nullish(),
};

/**
 * Fields this gateway cannot honour. Asking for them is a 400 that says so, not a silent answer
 * without them.
 */
const unsupported = (what: string) =>
  z
    .unknown()
    .optional()
    .refine((v) => v === undefined || v === null || v === false || v === 0 || (Array.isArray(v) && v.length === 0), {
      message: `${what} are not supported by this gateway yet`,
    });
const notYet = {
  functions: unsupported("functions (use tools)"),
};

/** Functions one chat request may offer. */
export const MAX_TOOLS = 128;

const tool = z.object({
  type: z.literal("function"),
  function: z.object({
    name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "a function name is 1 to 64 letters, digits, _ or -"),
    description: z.string().max(4_096).optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullish(),
  }),
});

const toolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }),
]);

const responseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: z.string().max(64),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().nullish(),
      description: z.string().max(4_096).optional(),
    }),
  }),
]);

/** Alternatives per token a completion may ask for (`logprobs`, OpenAI's legacy limit). */
export const MAX_COMPLETION_LOGPROBS = 5;

export const completionRequest = z.object({
  ...common,
  ...notYet,
  prompt: z.string().max(MAX_PROMPT_CHARS),
  logprobs: z.number().int().min(0).max(MAX_COMPLETION_LOGPROBS).nullish(),
});

/** A message's text: a string, or text parts (images and audio are not something these models read). */
const content = z.union([
  z.string().max(MAX_PROMPT_CHARS),
  z
    .array(z.object({ type: z.literal("text"), text: z.string().max(MAX_PROMPT_CHARS) }))
    .max(MAX_CHAT_MESSAGES)
    .transform((parts) => parts.map((p) => p.text).join("")),
]);

const message = z.object({
  role: z.enum(["system", "developer", "user", "assistant"]),
  content,
  name: z.string().max(256).optional(),
});

export const chatRequest = z.object({
  ...common,
  ...notYet,
  tools: z.array(tool).max(MAX_TOOLS).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  response_format: responseFormat.nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
  messages: z.array(message).min(1).max(MAX_CHAT_MESSAGES),
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
    ...(r.logprobs !== undefined && r.logprobs !== null ? { logprobs: r.logprobs } : {}),
    ...(r.max_tokens ? { maxTokens: r.max_tokens } : {}),
  };
}

/**
 * A chat: system (and developer) messages become the system prompt, the last message (a user's) the
 * prompt, and the user and assistant messages before it the conversation so far, all rendered by the
 * model's chat template exactly as `infernet run --chat --system ...` renders one turn (a model without
 * a template of its own gets node-llama-cpp's general one, see the README).
 */
export function chatToGenerate(r: ChatRequest): Omit<GenerateRequest, "kind"> {
  const maxTokens = r.max_completion_tokens ?? r.max_tokens;
  if (!r.logprobs && r.top_logprobs) {
    throw new ApiError(400, "top_logprobs needs logprobs: true", "invalid_request_error", "top_logprobs");
  }
  const called = forcedTool(r);
  const format = called ? toolFormat(called) : outputFormat(r);
  return {
    ...chatTurns(r.messages),
    ...sampling(r),
    ...(maxTokens ? { maxTokens } : {}),
    ...(r.logprobs ? { logprobs: r.top_logprobs ?? 0 } : {}),
    ...(format ? { format } : {}),
  };
}

type Tool = z.infer<typeof tool>["function"];

/**
 * The function a chat must call, if it names one (`tool_choice` a function, or "required" with one
 * tool): the model then writes its arguments under the grammar of their JSON schema, which any model
 * can. Letting the model choose (`auto`) needs a chat template with function calling, which no catalog
 * model served here has to test against: refused, never ignored.
 */
export function forcedTool(r: ChatRequest): Tool | undefined {
  const tools = r.tools ?? [];
  const choice = r.tool_choice;
  if (tools.length === 0) {
    if (choice && choice !== "none" && choice !== "auto") {
      throw new ApiError(
        400,
        "tool_choice names a function but no tools were given",
        "invalid_request_error",
        "tool_choice",
      );
    }
    return undefined;
  }
  if (choice === "none") return undefined;
  if (choice === "required" && tools.length === 1) return tools[0]!.function;
  if (typeof choice === "object" && choice !== null) {
    const named = tools.find((t) => t.function.name === choice.function.name);
    if (!named) {
      throw new ApiError(
        400,
        `tool_choice: no tool named ${choice.function.name}`,
        "invalid_request_error",
        "tool_choice",
      );
    }
    return named.function;
  }
  throw new ApiError(
    400,
    "tools: letting the model choose whether to call (tool_choice auto, or required with several tools) is not supported yet; name the function in tool_choice",
    "invalid_request_error",
    "tool_choice",
  );
}

function toolFormat(t: Tool): OutputFormat {
  return { type: "json_schema", schema: t.parameters ?? { type: "object", properties: {} } };
}

function outputFormat(r: ChatRequest): OutputFormat | undefined {
  const f = r.response_format;
  if (!f || f.type === "text") return undefined;
  if (f.type === "json_object") return { type: "json_object" };
  return f.json_schema.schema ? { type: "json_schema", schema: f.json_schema.schema } : { type: "json_object" };
}

/** System text, earlier turns and the last user message, as the engine takes a chat (shared with Ollama's). */
export function chatTurns(
  messages: readonly { role: string; content: string }[],
): Pick<GenerateRequest, "prompt" | "chat" | "system" | "history"> {
  const system = messages.filter((m) => m.role === "system" || m.role === "developer").map((m) => m.content);
  const turns = messages
    .filter((m) => m.role === "user" || m.role === "assistant")
    .map((m) => ({ role: m.role as "user" | "assistant", content: m.content }));
  const last = turns.pop();
  if (last?.role !== "user") {
    throw new ApiError(
      400,
      "messages: the last message (after any system messages) must be the user's",
      "invalid_request_error",
      "messages",
    );
  }
  return {
    prompt: last.content,
    chat: true,
    ...(system.length ? { system: system.join("\n\n") } : {}),
    ...(turns.length ? { history: turns } : {}),
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

/** UTF-8 bytes of a token's text, as OpenAI's chat logprobs give them. */
function bytesOf(text: string): number[] {
  return Array.from(Buffer.from(text, "utf8"));
}

/** Log-probabilities as a chat choice carries them. */
export function chatLogprobs(tokens: readonly TokenLogprob[]) {
  return {
    content: tokens.map((t) => ({
      token: t.text,
      logprob: t.logprob,
      bytes: bytesOf(t.text),
      top_logprobs: t.top.map((a) => ({ token: a.text, logprob: a.logprob, bytes: bytesOf(a.text) })),
    })),
    refusal: null,
  };
}

/** Log-probabilities as a (legacy) completion choice carries them; `offset` is where the text starts. */
export function completionLogprobs(tokens: readonly TokenLogprob[], offset = 0) {
  const textOffset: number[] = [];
  let at = offset;
  for (const t of tokens) {
    textOffset.push(at);
    at += t.text.length;
  }
  return {
    tokens: tokens.map((t) => t.text),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => Object.fromEntries(t.top.map((a) => [a.text, a.logprob]))),
    text_offset: textOffset,
  };
}
