import { describe, expect, test } from "bun:test";
import { fromHalf, fromHalfArray, toHalf, toHalfArray } from "./float16.ts";

describe("float16 bits", () => {
  test("known values", () => {
    expect(toHalf(0)).toBe(0x0000);
    expect(toHalf(-0)).toBe(0x8000);
    expect(toHalf(1)).toBe(0x3c00);
    expect(toHalf(-2)).toBe(0xc000);
    expect(toHalf(0.5)).toBe(0x3800);
    expect(toHalf(65504)).toBe(0x7bff);
    expect(toHalf(65520)).toBe(0x7c00); // rounds up past the largest finite half
    expect(toHalf(1e6)).toBe(0x7c00);
    expect(toHalf(Number.NEGATIVE_INFINITY)).toBe(0xfc00);
    expect(toHalf(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toHalf(2 ** -26)).toBe(0x0000); // below half of it: zero
    expect(toHalf(2 ** -14)).toBe(0x0400); // smallest normal
    expect(fromHalf(0x3c00)).toBe(1);
    expect(fromHalf(0x0001)).toBe(2 ** -24);
    expect(fromHalf(0x7bff)).toBe(65504);
    expect(fromHalf(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
    expect(Number.isNaN(fromHalf(toHalf(Number.NaN)))).toBe(true);
  });

  test("every half survives bits -> float32 -> bits", () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const nan = (bits & 0x7c00) === 0x7c00 && (bits & 0x3ff) !== 0;
      if (nan) continue;
      expect(toHalf(fromHalf(bits))).toBe(bits);
    }
  });

  test("rounds to nearest, ties to even, like the platform's own float16", () => {
    // Bun's Float16Array rounds per IEEE 754; it is used here only as a reference, never for feeds.
    const reference = new Float16Array(1);
    const referenceBits = new Uint16Array(reference.buffer);
    const samples = new Float32Array(200_000);
    let seed = 12345;
    for (let i = 0; i < samples.length; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const exponent = (seed % 48) - 30; // covers subnormals, normals and overflow
      samples[i] = ((seed / 0xffffffff) * 2 - 1) * 2 ** exponent;
    }
    for (const halfway of [1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -24 * 1.5, 2 ** -24 * 2.5]) {
      for (const v of [halfway, -halfway]) {
        reference[0] = v;
        expect(toHalf(v)).toBe(referenceBits[0] as number);
      }
    }
    for (const v of samples) {
      reference[0] = v;
      expect(toHalf(v)).toBe(referenceBits[0] as number);
    }
  });

  test("array helpers round-trip float32 values that are exact in half precision", () => {
    const values = new Float32Array([0, 1, -1, 0.25, 1024, -0.0009765625, 65504]);
    expect(Array.from(fromHalfArray(toHalfArray(values)))).toEqual(Array.from(values));
    expect(toHalfArray(values)).toBeInstanceOf(Uint16Array);
    expect(toHalfArray(values).constructor).toBe(Uint16Array);
  });
});
