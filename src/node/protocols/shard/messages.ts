import { z } from "zod";
import { MAX_SHARD_BYTES } from "../../../jobs/records.ts";
import { ErrorMessageSchema, WIRE_VERSION } from "../../wire.ts";
import { MAX_DEADLINE_MS, ModelRefSchema } from "../infer/messages.ts";

/**
 * Messages of /infernet/shard/1.0.0. The aggregator sends one `shard` frame (the model and the shard,
 * encoded by jobs/shard-codec.ts); the provider answers with `partial` frames, each holding the
 * results of the next records in order (`first` is the shard-relative index of its first record),
 * then `done` with usage once every record is covered, or an `error` frame at any point; `keepalive`
 * frames, which carry nothing, may come between them. The shard
 * and result bodies are checked by the codec's schemas (`shardFromWire`, `resultFromWire`); this file
 * bounds the envelope.
 *
 * A `shards` frame asks for several shards on one stream (tiny shards cost more in stream set-up than
 * in compute). The provider runs them one after the other, in request order, in one slot: each one's
 * `partial` frames (the result names its shard), then its `done`, which then carries `shard`, the
 * shard's index. An `error` frame ends the whole stream; shards already done stay done.
 */

export { MAX_DEADLINE_MS, ModelRefSchema };

/**
 * Largest request frame: a shard's payload (at most `MAX_SHARD_BYTES`) plus the CBOR around it (image
 * headers, prompt settings, names), which never doubles it.
 */
export const MAX_REQUEST_FRAME_BYTES = 2 * MAX_SHARD_BYTES;
/**
 * Most shards in one `shards` request. Why a cap: the provider holds one slot for the whole batch, so a
 * long batch would starve other clients, and a batch is meant for tiny shards (64 covers the per-stream
 * overhead many times over).
 */
export const MAX_SHARDS_PER_REQUEST = 64;
/** Largest response frame. One record's output always fits (4 Mi UTF-16 chars are at most 12 MiB of UTF-8). */
export const MAX_RESPONSE_FRAME_BYTES = 16 * 1024 ** 2;
/** A provider splits a tensor partial into frames whose output is at most this many bytes. */
export const MAX_PARTIAL_OUTPUT_BYTES = 8 * 1024 ** 2;

/** Error codes a provider sends; `bad-result` is the client's own (a result that does not fit its shard). */
export const REMOTE_SHARD_ERROR_CODES = [
  "unsupported-version",
  "bad-request",
  "model-not-served",
  "busy",
  "timeout",
  "invalid-input",
  "internal",
  "protocol",
  "bad-result",
] as const;
export type RemoteShardErrorCode = (typeof REMOTE_SHARD_ERROR_CODES)[number];

const v = z.literal(WIRE_VERSION);
const count = z.int().min(0).max(Number.MAX_SAFE_INTEGER);

export const ShardRequestSchema = z.object({
  v,
  type: z.literal("shard"),
  model: ModelRefSchema,
  /** Checked by `shardFromWire`. */
  shard: z.unknown(),
  /** The client's remaining budget; the provider stops at min(this, its own cap). */
  deadlineMs: z.int().min(1).max(MAX_DEADLINE_MS).optional(),
});
export type ShardRequest = z.infer<typeof ShardRequestSchema>;

/** Several shards on one stream; indices must be distinct (the provider checks, as `shardFromWire` does each shard). */
export const ShardBatchRequestSchema = z.object({
  v,
  type: z.literal("shards"),
  model: ModelRefSchema,
  /** Each checked by `shardFromWire`; the whole frame stays within `MAX_REQUEST_FRAME_BYTES`. */
  shards: z.array(z.unknown()).min(1).max(MAX_SHARDS_PER_REQUEST),
  /** The client's remaining budget for the whole batch; the provider stops at min(this, its own cap). */
  deadlineMs: z.int().min(1).max(MAX_DEADLINE_MS).optional(),
});
export type ShardBatchRequest = z.infer<typeof ShardBatchRequestSchema>;

/** What a provider reads first on a stream: one shard or a batch. */
export const ShardRequestMessageSchema = z.discriminatedUnion("type", [ShardRequestSchema, ShardBatchRequestSchema]);

/** What computing one shard cost the provider. */
export const ShardUsageSchema = z.object({
  /** Records computed (the shard's count). */
  records: count,
  /** Prompt tokens (llama) or input records (onnx). */
  inputTokens: count,
  /** Generated tokens (llama) or output records (onnx). */
  outputTokens: count,
  /** Time spent in the engines, in milliseconds. */
  computeMs: z.number().min(0).max(MAX_DEADLINE_MS),
});
export type ShardUsage = z.infer<typeof ShardUsageSchema>;

const PartialMessageSchema = z.object({
  v,
  type: z.literal("partial"),
  first: count,
  /** Checked by `resultFromWire`. */
  result: z.unknown(),
});

/** Sent by a provider that has written nothing for a while (see `KEEPALIVE_MS`); carries nothing. */
const KeepaliveMessageSchema = z.object({ v, type: z.literal("keepalive") });

const DoneMessageSchema = z.object({
  v,
  type: z.literal("done"),
  /** The finished shard's index: sent in answer to a `shards` request only (the client requires it there). */
  shard: count.optional(),
  usage: ShardUsageSchema,
});

export const ShardResponseSchema = z.discriminatedUnion("type", [
  PartialMessageSchema,
  KeepaliveMessageSchema,
  DoneMessageSchema,
  ErrorMessageSchema,
]);
export type ShardResponse = z.infer<typeof ShardResponseSchema>;
