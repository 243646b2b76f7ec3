import { z } from "zod";
import type { GenerateRequest } from "../runtime/engine.ts";
import { chatTurns, MAX_CHAT_MESSAGES, MAX_COMPLETION_TOKENS, MAX_PROMPT_CHARS, MAX_STOP_STRINGS } from "./openai.ts";

/**
 * Ollama's wire format on the same port (`/api/...`), so apps written for Ollama work unchanged:
 * requests parsed and bounded here, NDJSON frames built here, errors as Ollama sends them
 * (`{"error": "..."}`). Streaming is Ollama's default: `"stream": false` asks for one object.
 */

const options = z
  .object({
    num_predict: z.number().int().min(1).max(MAX_COMPLETION_TOKENS).optional(),
    temperature: z.number().min(0).max(2).optional(),
    top_p: z.number().gt(0).max(1).optional(),
    top_k: z.number().int().min(1).max(100_000).optional(),
    seed: z
      .number()
      .int()
      .min(0)
      .max(2 ** 32 - 1)
      .optional(),
    stop: z.array(z.string().min(1)).max(MAX_STOP_STRINGS).optional(),
  })
  // Ollama's other options (num_ctx, mirostat, ...) do not change what the network computes here.
  .loose()
  .optional();

/** Ollama's `format`: "json", or a JSON schema; the output is constrained to it (GenerateRequest.format). */
const format = z.union([z.literal("json"), z.record(z.string(), z.unknown())]).optional();

function formatOf(f: z.infer<typeof format>): Pick<GenerateRequest, "format"> {
  if (f === undefined) return {};
  return { format: f === "json" ? { type: "json_object" } : { type: "json_schema", schema: f } };
}

export const generateBody = z.object({
  model: z.string().min(1),
  prompt: z.string().max(MAX_PROMPT_CHARS),
  system: z.string().max(MAX_PROMPT_CHARS).optional(),
  raw: z.boolean().optional(),
  stream: z.boolean().optional(),
  format,
  options,
});

export const chatBody = z.object({
  model: z.string().min(1),
  messages: z
    .array(z.object({ role: z.enum(["system", "user", "assistant"]), content: z.string().max(MAX_PROMPT_CHARS) }))
    .min(1)
    .max(MAX_CHAT_MESSAGES),
  stream: z.boolean().optional(),
  format,
  options,
});

export const showBody = z.object({ model: z.string().min(1).optional(), name: z.string().min(1).optional() });

export type OllamaGenerate = z.infer<typeof generateBody>;
export type OllamaChat = z.infer<typeof chatBody>;

function sampling(o: z.infer<typeof options>): Omit<GenerateRequest, "kind" | "prompt"> {
  if (!o) return {};
  return {
    ...(o.num_predict !== undefined ? { maxTokens: o.num_predict } : {}),
    ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
    ...(o.top_p !== undefined ? { topP: o.top_p } : {}),
    ...(o.top_k !== undefined ? { topK: o.top_k } : {}),
    ...(o.seed !== undefined ? { seed: o.seed } : {}),
    ...(o.stop?.length ? { stop: o.stop } : {}),
  };
}

/** /api/generate: the model's template unless `raw` (then the prompt is continued as given). */
export function ollamaGenerate(b: OllamaGenerate): Omit<GenerateRequest, "kind"> {
  return {
    prompt: b.prompt,
    ...(b.raw ? { chat: false } : {}),
    ...(b.system !== undefined ? { system: b.system } : {}),
    ...sampling(b.options),
    ...formatOf(b.format),
  };
}

/** /api/chat: as /v1/chat/completions, system messages and the turns through the chat template. */
export function ollamaChat(b: OllamaChat): Omit<GenerateRequest, "kind"> {
  return { ...chatTurns(b.messages), ...sampling(b.options), ...formatOf(b.format) };
}

/** The counters Ollama puts in a final frame (durations in nanoseconds). */
export function finalCounts(usage: { inputTokens: number; outputTokens: number; computeMs: number }, totalMs: number) {
  return {
    total_duration: Math.round(totalMs * 1e6),
    prompt_eval_count: usage.inputTokens,
    eval_count: usage.outputTokens,
    eval_duration: Math.round(usage.computeMs * 1e6),
  };
}

/** One NDJSON line. */
export function ndjson(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}
