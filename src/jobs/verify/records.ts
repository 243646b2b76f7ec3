import type { Tensor } from "../../runtime/engine.ts";
import { ARRAY_OF } from "../../runtime/onnx/tensors.ts";
import type { Shard, ShardPayload, ShardResult } from "../records.ts";

/**
 * Record-level surgery on shards and results, for canaries (mixed into a shard, taken out of its
 * result) and evidence (the one record a provider got wrong). A tensor's records are its rows along
 * dimension 0, an image or prompt shard's its list entries, a text result's its outputs.
 */

/** Records a payload holds. */
export function payloadCount(payload: ShardPayload): number {
  if (payload.kind === "prompts") return payload.prompts.length;
  if (payload.kind === "images") return payload.images.length;
  return payload.tensor.dims[0] ?? 0;
}

/** Records a result holds. */
export function resultCount(result: ShardResult): number {
  return result.kind === "text" ? result.outputs.length : (result.output.dims[0] ?? 0);
}

/** The payload's records at `positions`, in that order. */
export function pickPayload(payload: ShardPayload, positions: readonly number[]): ShardPayload {
  if (payload.kind === "prompts") return { kind: "prompts", prompts: positions.map((i) => payload.prompts[i]!) };
  if (payload.kind === "images") {
    return {
      kind: "images",
      images: positions.map((i) => payload.images[i]!),
      ...(payload.names ? { names: positions.map((i) => payload.names?.[i] ?? "") } : {}),
    };
  }
  return { kind: "tensor", tensor: pickRows(payload.tensor, positions) };
}

/** The result's records at `positions`, in that order. */
export function pickResult(result: ShardResult, positions: readonly number[]): ShardResult {
  if (result.kind === "text") return { ...result, outputs: positions.map((i) => result.outputs[i]!) };
  return { ...result, output: pickRows(result.output, positions) };
}

/**
 * `base` with `extra`'s records inserted so that they sit at `positions` (sorted, ascending) of the
 * combined payload; the other records keep their order.
 */
export function insertPayload(base: ShardPayload, extra: ShardPayload, positions: readonly number[]): ShardPayload {
  const total = payloadCount(base) + payloadCount(extra);
  const order = interleave(total, positions);
  if (base.kind === "prompts" && extra.kind === "prompts") {
    return { kind: "prompts", prompts: order.map(([from, i]) => (from ? extra.prompts[i]! : base.prompts[i]!)) };
  }
  if (base.kind === "images" && extra.kind === "images") {
    const names = base.names
      ? order.map(([from, i]) => (from ? (extra.names?.[i] ?? `record-${i}`) : (base.names?.[i] ?? "")))
      : undefined;
    return {
      kind: "images",
      images: order.map(([from, i]) => (from ? extra.images[i]! : base.images[i]!)),
      ...(names ? { names } : {}),
    };
  }
  if (base.kind === "tensor" && extra.kind === "tensor") {
    return { kind: "tensor", tensor: joinRows(order, base.tensor, extra.tensor) };
  }
  throw new TypeError(`cannot mix ${extra.kind} records into a ${base.kind} shard`);
}

/** A shard with `extra` mixed in at `positions`: the same index and start, more records. */
export function mixShard(shard: Shard, extra: ShardPayload, positions: readonly number[]): Shard {
  const payload = insertPayload(shard.payload, extra, positions);
  return { ...shard, count: payloadCount(payload), payload };
}

/** For each record of a combined list of `total`: whether it is an inserted one, and its index in its list. */
function interleave(total: number, positions: readonly number[]): [boolean, number][] {
  const inserted = new Set(positions);
  const out: [boolean, number][] = [];
  let base = 0;
  let extra = 0;
  for (let i = 0; i < total; i++) out.push(inserted.has(i) ? [true, extra++] : [false, base++]);
  return out;
}

function rowBytes(t: Tensor): number {
  const rows = t.dims[0] ?? 0;
  return rows === 0 ? 0 : t.data.byteLength / rows;
}

function bytesOf(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function fromBytes(like: Tensor, dims: number[], bytes: Uint8Array): Tensor {
  const Typed = ARRAY_OF[like.type];
  return {
    type: like.type,
    dims,
    data: new Typed(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength / Typed.BYTES_PER_ELEMENT),
  } as Tensor;
}

function pickRows(t: Tensor, positions: readonly number[]): Tensor {
  const size = rowBytes(t);
  const from = bytesOf(t);
  const out = new Uint8Array(size * positions.length);
  for (const [k, i] of positions.entries()) out.set(from.subarray(i * size, (i + 1) * size), k * size);
  return fromBytes(t, [positions.length, ...t.dims.slice(1)], out);
}

function joinRows(order: [boolean, number][], base: Tensor, extra: Tensor): Tensor {
  if (base.type !== extra.type || base.dims.slice(1).join() !== extra.dims.slice(1).join()) {
    throw new TypeError("inserted rows do not match the shard's tensor");
  }
  const size = rowBytes(base.dims[0] ? base : extra);
  const a = bytesOf(base);
  const b = bytesOf(extra);
  const out = new Uint8Array(size * order.length);
  for (const [k, [from, i]] of order.entries()) {
    out.set((from ? b : a).subarray(i * size, (i + 1) * size), k * size);
  }
  return fromBytes(base, [order.length, ...base.dims.slice(1)], out);
}
