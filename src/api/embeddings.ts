import { z } from "zod";
import { MAX_EMBED_INPUTS } from "../node/protocols/infer/messages.ts";
import type { Usage } from "../runtime/engine.ts";
import type { Ticket } from "./access.ts";
import { GENERATION_DEADLINE_MS, metered, PROVIDER_HEADER, type Runner } from "./generation.ts";
import { ApiError, MAX_PROMPT_CHARS } from "./openai.ts";

/**
 * Embeddings through the gateway (`POST /v1/embeddings`, Ollama's `/api/embed` and `/api/embeddings`):
 * the texts go to one provider as one request (llama.cpp's embedding context there), the vectors come
 * back as one float32 [inputs, dimensions] tensor. Priced by the tokens read, at the provider's price.
 */

const text = z.string().min(1).max(MAX_PROMPT_CHARS);
const inputs = z.union([text, z.array(text).min(1).max(MAX_EMBED_INPUTS)]);

export const embeddingsRequest = z.object({
  model: z.string().min(1),
  input: inputs,
  encoding_format: z.enum(["float", "base64"]).nullish(),
  /** Only the model's own width: these models cannot shorten their vectors. */
  dimensions: z.number().int().positive().nullish(),
  user: z.string().max(256).nullish(),
});

export const ollamaEmbedBody = z.object({ model: z.string().min(1), input: inputs, truncate: z.boolean().optional() });
export const ollamaEmbeddingsBody = z.object({ model: z.string().min(1), prompt: text });

export interface Embedded {
  vectors: Float32Array[];
  usage: Usage;
  headers: Record<string, string>;
}

/** Runs one embedding request on the network (with the key's accounting and busy retries). */
export async function embedTexts(
  run: Runner,
  model: { id: string; sha256: string },
  texts: string[],
  signal: AbortSignal,
  ticket: Ticket,
): Promise<Embedded> {
  if (texts.reduce((n, t) => n + t.length, 0) > MAX_PROMPT_CHARS) {
    throw new ApiError(400, `input: over ${MAX_PROMPT_CHARS} characters in all`, "invalid_request_error", "input");
  }
  const deadline = AbortSignal.timeout(GENERATION_DEADLINE_MS);
  const runSignal = AbortSignal.any([signal, deadline]);
  // A token is at least one byte, plus one for the start of each text: the most this can be billed.
  const worst = texts.reduce((n, t) => n + Buffer.byteLength(t) + 1, 0);
  const events = metered(
    () => run({ name: model.id, sha256: model.sha256 }, { kind: "embed", inputs: texts }, runSignal),
    {
      ticket,
      maxUnits: worst,
      signal: runSignal,
      deadline,
      billed: (usage) => usage.inputTokens,
      model: model.sha256,
    },
  );
  let provider: string | undefined;
  let vectors: Float32Array[] | undefined;
  let usage: Usage | undefined;
  for await (const e of events) {
    if (e.type === "provider") provider = e.peerId;
    else if (e.type === "tensors") {
      const t = e.outputs.embeddings;
      const [rows, width] = t?.dims ?? [];
      if (t?.type !== "float32" || rows !== texts.length || !width) {
        throw new ApiError(502, "the provider returned no embeddings of the right shape", "server_error");
      }
      const data = t.data as Float32Array;
      vectors = Array.from({ length: rows }, (_, i) => data.slice(i * width, (i + 1) * width));
    } else if (e.type === "done") usage = e.usage;
  }
  if (!vectors || !usage) throw new ApiError(502, "the provider ended without embeddings", "server_error");
  return { vectors, usage, headers: provider ? { [PROVIDER_HEADER]: provider } : {} };
}

/** A vector as OpenAI sends it: numbers, or base64 of its little-endian float32 bytes. */
export function encodeVector(v: Float32Array, format: "float" | "base64" | null | undefined): number[] | string {
  if (format !== "base64") return Array.from(v);
  const bytes = new Uint8Array(v.byteLength);
  const view = new DataView(bytes.buffer);
  for (const [i, x] of v.entries()) view.setFloat32(i * 4, x, true);
  return Buffer.from(bytes).toString("base64");
}
