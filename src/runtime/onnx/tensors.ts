import type { Tensor, TensorType } from "../engine.ts";
import { fromHalfArray } from "./float16.ts";

/**
 * Dense-tensor helpers shared by the engine and the input readers: sizes, slicing and joining
 * along the batch dimension (dimension 0), and checking that data matches its declared type.
 */
export type TensorData = Tensor["data"];

type TypedArrayConstructor =
  | Float32ArrayConstructor
  | Uint16ArrayConstructor
  | Int32ArrayConstructor
  | BigInt64ArrayConstructor
  | Uint8ArrayConstructor
  | Int8ArrayConstructor;

/** The array class that holds each element type (`bool` is one byte per element, as in ONNX). */
export const ARRAY_OF: Record<TensorType, TypedArrayConstructor> = {
  float32: Float32Array,
  float16: Uint16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  int8: Int8Array,
  bool: Uint8Array,
};

export const TENSOR_TYPES = Object.keys(ARRAY_OF) as TensorType[];

export function isTensorType(type: string): type is TensorType {
  return (TENSOR_TYPES as string[]).includes(type);
}

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** A zero-filled array for `count` elements of `type`. */
export function allocate(type: TensorType, count: number): TensorData {
  return new ARRAY_OF[type](count);
}

/** Whether `data` is the array class `type` needs (a `Float16Array` is never accepted). */
export function hasArrayOf(type: TensorType, data: unknown): boolean {
  return data instanceof ARRAY_OF[type] && data.constructor === ARRAY_OF[type];
}

/** Records `start` (inclusive) to `end` (exclusive) along dimension 0, sharing memory with `tensor`. */
export function sliceBatch(tensor: Tensor, start: number, end: number): Tensor {
  const per = elementCount(tensor.dims.slice(1));
  return {
    type: tensor.type,
    dims: [end - start, ...tensor.dims.slice(1)],
    data: tensor.data.subarray(start * per, end * per),
  };
}

/** Joins tensors of the same type and trailing dimensions along dimension 0. */
export function concatBatch(parts: readonly Tensor[]): Tensor {
  const first = parts[0];
  if (!first) throw new RangeError("concatBatch needs at least one tensor");
  if (parts.length === 1) return first;
  const rest = first.dims.slice(1);
  let records = 0;
  let length = 0;
  for (const p of parts) {
    if (
      p.type !== first.type ||
      p.dims.length !== first.dims.length ||
      p.dims.some((d, i) => i > 0 && d !== rest[i - 1])
    ) {
      throw new RangeError(`cannot join ${describe(p)} to ${describe(first)}`);
    }
    records += p.dims[0] ?? 0;
    length += p.data.length;
  }
  const data = allocate(first.type, length);
  let offset = 0;
  for (const p of parts) {
    // The element types match, so the typed-array set is a plain copy.
    (data as Uint8Array).set(p.data as Uint8Array, offset);
    offset += p.data.length;
  }
  return { type: first.type, dims: [records, ...rest], data };
}

/** `float32[1,1,28,28]` */
export function describe(tensor: Pick<Tensor, "type" | "dims">): string {
  return `${tensor.type}[${tensor.dims.join(",")}]`;
}

/** Element values as JavaScript numbers (int64 as numbers, float16 decoded), for JSON output. */
export function toNumbers(tensor: Tensor): number[] {
  if (tensor.type === "float16") return Array.from(fromHalfArray(tensor.data as Uint16Array));
  if (tensor.data instanceof BigInt64Array) return Array.from(tensor.data, (v) => Number(v));
  return Array.from(tensor.data as ArrayLike<number>);
}
