import { z } from "zod";
import type { Tensor, TensorType } from "../runtime/engine.ts";
import { ARRAY_OF, elementCount, TENSOR_TYPES } from "../runtime/onnx/tensors.ts";
import { InvalidInputError } from "../util/errors.ts";
import {
  MAX_JOB_RECORDS,
  MAX_PROVIDER_ID_CHARS,
  MAX_PROVIDERS_PER_SHARD,
  MAX_SHARD_BYTES,
  MAX_SHARDS,
  PromptRecordSchema,
  payloadBytes,
  ResultShapeError,
  type Shard,
  type ShardResult,
} from "./records.ts";

/**
 * Shards and shard results as plain values for CBOR (cborg encodes `Uint8Array` as a byte string but
 * no other typed array): tensor data travels as its little-endian bytes. Decoding is for untrusted
 * peer data: every field is checked with a schema, counts must match, and sizes are bounded.
 * Every host Bun runs on (x64, arm64) is little-endian, so tensor bytes are views, not swapped copies.
 */

/** Most records one shard may hold. */
export const MAX_SHARD_RECORDS = 1_000_000;

/** Longest output text of one record in a result. */
export const MAX_OUTPUT_TEXT_CHARS = 4 * 1024 ** 2;

/** Most dimensions of a tensor in a shard or result. */
export const MAX_WIRE_TENSOR_DIMS = 8;

/** Largest result sent back for one shard. */
export const MAX_RESULT_BYTES = 64 * 1024 ** 2;

const bytes = z.custom<Uint8Array>((x) => x instanceof Uint8Array, "must be a byte string");

const WireTensorSchema = z
  .strictObject({
    type: z.enum(TENSOR_TYPES as [TensorType, ...TensorType[]]),
    dims: z
      .array(
        z
          .int()
          .min(0)
          .max(2 ** 31 - 1),
      )
      .max(MAX_WIRE_TENSOR_DIMS),
    data: bytes,
  })
  .refine((t) => elementCount(t.dims) * ARRAY_OF[t.type].BYTES_PER_ELEMENT === t.data.byteLength, {
    message: "tensor data length does not match dims x element size",
  });
type WireTensor = z.infer<typeof WireTensorSchema>;

const WireImageSchema = z
  .strictObject({
    width: z.int().min(1).max(65_535),
    height: z.int().min(1).max(65_535),
    channels: z.union([z.literal(1), z.literal(3), z.literal(4)]),
    data: bytes,
  })
  .refine((i) => i.width * i.height * i.channels === i.data.byteLength, {
    message: "image data length does not match width x height x channels",
  });

const WirePayloadSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("prompts"), prompts: z.array(PromptRecordSchema).max(MAX_SHARD_RECORDS) }),
  z.strictObject({
    kind: z.literal("images"),
    images: z.array(WireImageSchema).max(MAX_SHARD_RECORDS),
    names: z.array(z.string().max(4096)).max(MAX_SHARD_RECORDS).optional(),
  }),
  z.strictObject({ kind: z.literal("tensor"), tensor: WireTensorSchema }),
]);

const WireShardSchema = z.strictObject({
  index: z
    .int()
    .min(0)
    .max(MAX_SHARDS - 1),
  start: z
    .int()
    .min(0)
    .max(MAX_JOB_RECORDS - 1),
  count: z.int().min(1).max(MAX_SHARD_RECORDS),
  payload: WirePayloadSchema,
});

const providers = z.array(z.string().min(1).max(MAX_PROVIDER_ID_CHARS)).min(1).max(MAX_PROVIDERS_PER_SHARD);

const WireResultSchema = z.discriminatedUnion("kind", [
  z.strictObject({
    kind: z.literal("text"),
    shard: z
      .int()
      .min(0)
      .max(MAX_SHARDS - 1),
    providers,
    outputs: z.array(z.string().max(MAX_OUTPUT_TEXT_CHARS)).max(MAX_SHARD_RECORDS),
  }),
  z.strictObject({
    kind: z.literal("tensor"),
    shard: z
      .int()
      .min(0)
      .max(MAX_SHARDS - 1),
    providers,
    output: WireTensorSchema,
  }),
]);

/** A shard as a CBOR-ready value. */
export function shardToWire(shard: Shard): unknown {
  const { payload } = shard;
  const wirePayload =
    payload.kind === "tensor"
      ? { kind: "tensor", tensor: tensorToWire(payload.tensor) }
      : payload.kind === "images"
        ? {
            ...payload,
            images: payload.images.map(({ width, height, channels, data }) => ({ width, height, channels, data })),
          }
        : payload;
  return { index: shard.index, start: shard.start, count: shard.count, payload: wirePayload };
}

/** A shard from a decoded (untrusted) value; an `InvalidInputError` saying what is wrong otherwise. */
export function shardFromWire(value: unknown, maxBytes = MAX_SHARD_BYTES): Shard {
  const parsed = WireShardSchema.safeParse(value);
  if (!parsed.success) throw new InvalidInputError(`a malformed shard: ${firstIssue(parsed.error)}`);
  const { index, start, count, payload: wire } = parsed.data;
  const payload = wire.kind === "tensor" ? { kind: "tensor" as const, tensor: tensorFromWire(wire.tensor) } : wire;
  const records =
    payload.kind === "tensor"
      ? payload.tensor.dims[0]
      : payload.kind === "images"
        ? payload.images.length
        : payload.prompts.length;
  if (records !== count) throw new InvalidInputError(`shard ${index} declares ${count} records and holds ${records}`);
  if (payload.kind === "images" && payload.names && payload.names.length !== count) {
    throw new InvalidInputError(`shard ${index} names ${payload.names.length} of its ${count} images`);
  }
  const size = payloadBytes(payload);
  if (size > maxBytes) throw new InvalidInputError(`shard ${index} is ${size} bytes; at most ${maxBytes}`);
  return { index, start, count, payload };
}

/** A result as a CBOR-ready value. */
export function resultToWire(result: ShardResult): unknown {
  return result.kind === "tensor" ? { ...result, output: tensorToWire(result.output) } : result;
}

/**
 * A result from a decoded (untrusted) value; a `ResultShapeError` otherwise. Whether it fits its
 * shard (record count, record shape) is the merger's check.
 */
export function resultFromWire(value: unknown, maxBytes = MAX_RESULT_BYTES): ShardResult {
  const parsed = WireResultSchema.safeParse(value);
  if (!parsed.success) throw new ResultShapeError(`a malformed shard result: ${firstIssue(parsed.error)}`);
  const wire = parsed.data;
  if (wire.kind === "text") {
    const chars = wire.outputs.reduce((sum, o) => sum + o.length, 0);
    if (chars > maxBytes)
      throw new ResultShapeError(`shard ${wire.shard}: ${chars} characters of output; at most ${maxBytes}`);
    return wire;
  }
  if (wire.output.data.byteLength > maxBytes) {
    throw new ResultShapeError(
      `shard ${wire.shard}: ${wire.output.data.byteLength} bytes of output; at most ${maxBytes}`,
    );
  }
  return { ...wire, output: tensorFromWire(wire.output) };
}

function tensorToWire(tensor: Tensor): WireTensor {
  const { data } = tensor;
  return { type: tensor.type, dims: tensor.dims, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

function tensorFromWire(wire: WireTensor): Tensor {
  const ArrayType = ARRAY_OF[wire.type];
  const size = ArrayType.BYTES_PER_ELEMENT;
  // A byte string inside a CBOR message can start at any offset; typed arrays need aligned ones.
  const data = wire.data.byteOffset % size === 0 ? wire.data : wire.data.slice();
  return {
    type: wire.type,
    dims: wire.dims,
    data: new ArrayType(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength / size),
  };
}

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return "unknown";
  return issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message;
}
