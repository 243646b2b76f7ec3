import { z } from "zod";
import type { Tensor } from "../runtime/engine.ts";
import type { RawImage } from "../runtime/onnx/inputs/image.ts";
import { InfernetError, InvalidInputError, UsageError } from "../util/errors.ts";

/**
 * The plain data that the splitter produces and the merger consumes: how a job's records are cut
 * into shards, what one shard carries to a provider, and what a provider hands back. Everything here
 * is plain objects, strings, numbers and typed arrays, so a shard encodes as CBOR (cborg) unchanged
 * and is stored or sent without a custom codec.
 */

/** Default records per shard when neither a size nor a count is given. */
export const DEFAULT_SHARD_SIZE = 500;

/** Most shards one job is cut into (keeps the job table and the merger's bookkeeping bounded). */
export const MAX_SHARDS = 100_000;

/** Most records one job holds. */
export const MAX_JOB_RECORDS = 100_000_000;

/** Largest payload of one shard sent to a provider (what the shard protocol will accept). */
export const MAX_SHARD_BYTES = 16 * 1024 ** 2;

/** Most providers recorded as having computed one shard. */
export const MAX_PROVIDERS_PER_SHARD = 64;

/** Longest provider id (a libp2p peer id is about 52 characters). */
export const MAX_PROVIDER_ID_CHARS = 128;

/** Longest prompt, in UTF-16 code units. */
export const MAX_PROMPT_CHARS = 256 * 1024;

/** Longest JSONL line of a prompts file, in bytes (a prompt plus its settings). */
export const MAX_PROMPT_LINE_BYTES = 1024 * 1024;

/** Largest prompts file read. */
export const MAX_PROMPTS_FILE_BYTES = 1024 ** 3;

/** Most generated tokens one prompt may ask for. */
export const MAX_PROMPT_TOKENS = 1_000_000;

/** Most stop strings per prompt, and the longest one. */
export const MAX_STOP_STRINGS = 16;
export const MAX_STOP_CHARS = 256;

/** One line of a prompts file: the prompt and optional generation settings (see `GenerateRequest`). */
export const PromptRecordSchema = z.strictObject({
  prompt: z.string().min(1).max(MAX_PROMPT_CHARS),
  system: z.string().max(MAX_PROMPT_CHARS).optional(),
  chat: z.boolean().optional(),
  maxTokens: z.int().min(1).max(MAX_PROMPT_TOKENS).optional(),
  temperature: z.number().min(0).max(100).optional(),
  topK: z.int().min(0).max(1_000_000).optional(),
  topP: z.number().min(0).max(1).optional(),
  seed: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  stop: z.array(z.string().min(1).max(MAX_STOP_CHARS)).max(MAX_STOP_STRINGS).optional(),
});
export type PromptRecord = z.infer<typeof PromptRecordSchema>;

/** How a job's records are cut: shard `i` holds records `[i * shardSize, min(records, (i + 1) * shardSize))`. */
export interface ShardPlan {
  records: number;
  shardSize: number;
  shardCount: number;
}

/** What a shard carries: prompts, decoded images, or rows of a tensor that is already model input. */
export type ShardPayload =
  | { kind: "prompts"; prompts: PromptRecord[] }
  | { kind: "images"; images: RawImage[]; names?: string[] }
  | { kind: "tensor"; tensor: Tensor };

/** A self-contained unit of work: its place in the job and its records. */
export interface Shard {
  /** Shard number, 0-based. */
  index: number;
  /** Global index of the shard's first record. */
  start: number;
  /** Records in the shard. */
  count: number;
  payload: ShardPayload;
}

/**
 * What came back for one shard. `providers` are the peers that computed it (all of them, when
 * redundant copies agreed). Text results hold one output per record; tensor results hold one
 * tensor whose dimension 0 is the record count (e.g. classifier logits `[count, classes]`).
 */
export type ShardResult =
  | { kind: "text"; shard: number; providers: string[]; outputs: string[] }
  | { kind: "tensor"; shard: number; providers: string[]; output: Tensor };

/** Records per shard and shard count for `records` records, from a size or a count (not both). */
export function planShards(records: number, options: { shardSize?: number; shardCount?: number } = {}): ShardPlan {
  const { shardSize, shardCount } = options;
  if (!Number.isSafeInteger(records) || records < 1 || records > MAX_JOB_RECORDS) {
    throw new InvalidInputError(`a job holds 1 to ${MAX_JOB_RECORDS} records, not ${records}`);
  }
  if (shardSize !== undefined && shardCount !== undefined) {
    throw new UsageError("give a shard size or a shard count, not both");
  }
  let size = shardSize ?? DEFAULT_SHARD_SIZE;
  if (shardCount !== undefined) {
    if (!Number.isSafeInteger(shardCount) || shardCount < 1 || shardCount > MAX_SHARDS) {
      throw new UsageError(`the shard count must be 1 to ${MAX_SHARDS}, not ${shardCount}`);
    }
    size = Math.ceil(records / Math.min(shardCount, records));
  } else if (!Number.isSafeInteger(size) || size < 1) {
    throw new UsageError(`the shard size must be a positive whole number, not ${size}`);
  }
  const count = Math.ceil(records / size);
  if (count > MAX_SHARDS) {
    throw new UsageError(`${records} records in shards of ${size} make ${count} shards; at most ${MAX_SHARDS}`, {
      hint: `use a shard size of at least ${Math.ceil(records / MAX_SHARDS)}`,
    });
  }
  return { records, shardSize: size, shardCount: count };
}

/** First record and record count of shard `index`. */
export function shardRange(plan: ShardPlan, index: number): { start: number; count: number } {
  const start = index * plan.shardSize;
  return { start, count: Math.max(0, Math.min(plan.shardSize, plan.records - start)) };
}

/** Bytes a payload takes on the wire, near enough to enforce `MAX_SHARD_BYTES` (UTF-8 text, raw arrays). */
export function payloadBytes(payload: ShardPayload): number {
  if (payload.kind === "tensor") return payload.tensor.data.byteLength;
  if (payload.kind === "images") return payload.images.reduce((sum, image) => sum + recordBytes(image), 0);
  return payload.prompts.reduce((sum, p) => sum + promptBytes(p), 0);
}

/** Bytes one image record takes. */
export function recordBytes(image: RawImage): number {
  return image.data.byteLength;
}

const encoder = new TextEncoder();

/** Bytes one prompt record takes (its JSON form). */
export function promptBytes(prompt: PromptRecord): number {
  return encoder.encode(JSON.stringify(prompt)).byteLength;
}

/** A single record bigger than the shard byte limit: it cannot be sent at all. */
export class RecordTooLargeError extends InfernetError {}

/** A shard bigger than the byte limit: fewer records per shard would fit. */
export class ShardTooLargeError extends InfernetError {}

/** Shards that never came back, so the output would have gaps. */
export class MissingShardsError extends InfernetError {
  constructor(readonly missing: number[]) {
    super(`${missing.length} shard(s) have no result: ${listShards(missing)}`, {
      hint: "run the missing shards again before merging",
    });
  }
}

/** The same shard came back twice with different content. */
export class ConflictingResultError extends InfernetError {}

/** A result that does not fit its shard: wrong record count, wrong shape or type, unknown shard. */
export class ResultShapeError extends InfernetError {}

/** `0-3, 7, 9-12`, at most the first `MAX_LISTED` numbers. */
function listShards(indices: number[]): string {
  const MAX_LISTED = 50;
  const parts: string[] = [];
  let i = 0;
  while (i < indices.length && i < MAX_LISTED) {
    let j = i;
    while (j + 1 < indices.length && (indices[j + 1] as number) === (indices[j] as number) + 1) j++;
    parts.push(i === j ? String(indices[i]) : `${indices[i]}-${indices[j]}`);
    i = j + 1;
  }
  return i < indices.length ? `${parts.join(", ")}, ...` : parts.join(", ");
}
