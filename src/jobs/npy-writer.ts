import type { TensorType } from "../runtime/engine.ts";
import { ResultShapeError } from "./records.ts";

/**
 * The header of a version 1.0 `.npy` file
 * (numpy.org/doc/stable/reference/generated/numpy.lib.format.html): magic, version, a little-endian
 * uint16 header length, then a Python dict literal padded with spaces and ended by a newline so the
 * data starts at a multiple of `NPY_ALIGNMENT`. The data (C order) follows it.
 */

/** Data alignment numpy itself uses for the header. */
export const NPY_ALIGNMENT = 64;

const DESCR: Partial<Record<TensorType, string>> = {
  float32: "<f4",
  float16: "<f2",
  int32: "<i4",
  int64: "<i8",
  uint8: "|u1",
  int8: "|i1",
  bool: "|b1",
};

export function npyHeader(type: TensorType, shape: readonly number[]): Uint8Array {
  const descr = DESCR[type];
  if (!descr) throw new ResultShapeError(`a ${type} tensor cannot be written as .npy`);
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  const fixed = 10;
  const total = Math.ceil((fixed + dict.length + 1) / NPY_ALIGNMENT) * NPY_ALIGNMENT;
  const text = `${dict.padEnd(total - fixed - 1, " ")}\n`;
  const out = new Uint8Array(total);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  new DataView(out.buffer).setUint16(8, text.length, true);
  out.set(new TextEncoder().encode(text), fixed);
  return out;
}
