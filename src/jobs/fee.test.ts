import { describe, expect, test } from "bun:test";
import { DEFAULT_FEE_PERCENT, feeMsat, isValidFee, MAX_FEE_PERCENT, MIN_FEE_PERCENT, parseFee } from "./fee.ts";

describe("parseFee", () => {
  const good: [string, number][] = [
    ["1%", 1],
    ["1", 1],
    ["0.5%", 0.5],
    ["1.5 %", 1.5],
    [" 2% ", 2],
    ["0.75", 0.75],
    ["1.25%", 1.25],
  ];
  for (const [text, percent] of good) {
    test(`"${text}" is ${percent}%`, () => expect(parseFee(text)).toBe(percent));
  }

  const bad = ["-1%", "-1", "NaN", "abc", "3%", "1%%", "0.4%", "2.01%", "", "%", "1.125%", "1e0", "Infinity", "1 % %"];
  for (const text of bad) {
    test(`"${text}" is refused with a UsageError naming the range`, () => {
      try {
        parseFee(text);
      } catch (err) {
        expect((err as Error).name).toBe("UsageError");
        expect((err as Error).message).toContain(`between ${MIN_FEE_PERCENT}% and ${MAX_FEE_PERCENT}%`);
        return;
      }
      throw new Error(`"${text}" was accepted`);
    });
  }

  test("the default fee is itself a valid fee", () => {
    expect(isValidFee(DEFAULT_FEE_PERCENT)).toBe(true);
    expect(parseFee(`${DEFAULT_FEE_PERCENT}%`)).toBe(DEFAULT_FEE_PERCENT);
  });
});

describe("feeMsat", () => {
  test("a percentage of the provider payment, rounded up to a whole msat", () => {
    expect(feeMsat(1000, 1)).toBe(10);
    expect(feeMsat(0, 2)).toBe(0);
    expect(feeMsat(1, 0.5)).toBe(1);
    expect(feeMsat(333, 1.5)).toBe(5); // 4.995
    expect(feeMsat(200, 0.5)).toBe(1);
    expect(feeMsat(201, 0.5)).toBe(2); // 1.005
  });

  test("exact where floating point is not: 0.56% and 1.09% of round amounts", () => {
    // 10_000 * 0.56 / 100 is 56.00000000000001 in floats, which a naive ceil makes 57.
    expect((10_000 * 0.56) / 100).toBeGreaterThan(56);
    expect(feeMsat(10_000, 0.56)).toBe(56);
    expect(feeMsat(100_000, 1.09)).toBe(1090);
    expect(feeMsat(100_000, 0.57)).toBe(570);
  });

  test("large payments do not lose precision", () => {
    const msat = Number.MAX_SAFE_INTEGER - 1; // even, so 2% of it is whole
    expect(BigInt(feeMsat(msat, 2))).toBe((BigInt(msat) * 2n) / 100n + ((BigInt(msat) * 2n) % 100n > 0n ? 1n : 0n));
  });

  test("bad amounts and fees are refused", () => {
    for (const [msat, fee] of [
      [-1, 1],
      [1.5, 1],
      [Number.NaN, 1],
      [100, -0.5],
      [100, 2.5],
      [100, 1.001],
      [100, Number.NaN],
    ] as const) {
      expect(() => feeMsat(msat, fee)).toThrow(expect.objectContaining({ name: "InvalidInputError" }));
    }
  });
});
