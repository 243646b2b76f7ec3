/**
 * IEEE 754 half precision as raw bits. Infernet carries float16 tensors as `Uint16Array` because
 * onnxruntime-node under Bun cannot read Bun's built-in `Float16Array` (the binding sees an empty
 * buffer); these helpers convert without relying on `Float16Array` at all.
 */
const scratch = new DataView(new ArrayBuffer(4));

/** The half-precision bits nearest to `value` (round to nearest, ties to even; overflow gives infinity). */
export function toHalf(value: number): number {
  scratch.setFloat32(0, value);
  const bits = scratch.getUint32(0);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;

  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 | (mantissa >>> 13) : 0);
  // Rebias from float32 (127) to float16 (15).
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa, with its implicit leading one, into place.
    if (e < -10) return sign;
    const m = mantissa | 0x800000;
    const shift = 14 - e;
    return sign | roundShift(m, shift);
  }
  // A carry out of the mantissa correctly bumps the exponent (and may reach infinity).
  return sign | ((e << 10) + roundShift(mantissa, 13));
}

/** `m >> shift`, rounded to nearest with ties to even. */
function roundShift(m: number, shift: number): number {
  const truncated = m >>> shift;
  const remainder = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (remainder > half || (remainder === half && (truncated & 1) === 1)) return truncated + 1;
  return truncated;
}

/** The value of half-precision `bits`. */
export function fromHalf(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Converts float32 values to half bits. */
export function toHalfArray(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = toHalf(values[i] ?? 0);
  return out;
}

let table: Float32Array | undefined;

/** Converts half bits to float32 values (through a 65,536-entry table built on first use). */
export function fromHalfArray(bits: Uint16Array): Float32Array {
  if (!table) {
    table = new Float32Array(0x10000);
    for (let b = 0; b < 0x10000; b++) table[b] = fromHalf(b);
  }
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i] ?? 0] ?? 0;
  return out;
}
