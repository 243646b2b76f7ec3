import { describe, expect, test } from "bun:test";
import { add, formatMsat, MAX_MSAT, msat, parseAmountText, sats, scale, sub, toSatsFloor } from "./amount.ts";

describe("msat amounts", () => {
  test("whole, non-negative amounts up to 21 million bitcoin are accepted from bigint, number and text", () => {
    expect<bigint>(msat(0)).toBe(0n);
    expect<bigint>(msat(1_234n)).toBe(1_234n);
    expect<bigint>(msat("2100000000000000000")).toBe(MAX_MSAT);
    expect<bigint>(sats(3)).toBe(3_000n);
  });

  test.each([
    [-1, /negative/],
    [1.5, /whole number/],
    [Number.NaN, /whole number/],
    [2 ** 60, /whole number/],
    ["-5", /whole number/],
    ["1e3", /whole number/],
    ["", /whole number/],
    [MAX_MSAT + 1n, /21 million/],
  ])("%p is refused", (value, message) => {
    expect(() => msat(value as bigint | number | string)).toThrow(message);
  });

  test("arithmetic cannot overflow or go negative", () => {
    expect<bigint>(add(msat(1), msat(2), msat(3))).toBe(6n);
    expect(() => add(MAX_MSAT as ReturnType<typeof msat>, msat(1))).toThrow(/21 million/);
    expect<bigint>(sub(msat(5), msat(5))).toBe(0n);
    expect(() => sub(msat(5), msat(6), "balance")).toThrow(/balance: 6 msat is more than 5 msat/);
  });

  test("scaling rounds the way it is told, exactly, beyond 2^53", () => {
    const big = msat(9_007_199_254_740_993n);
    expect<bigint>(scale(big, 1n, 100n, "down")).toBe(90_071_992_547_409n);
    expect<bigint>(scale(big, 1n, 100n, "up")).toBe(90_071_992_547_410n);
    expect<bigint>(scale(msat(1), 150n, 10_000n, "up")).toBe(1n);
    expect<bigint>(scale(msat(1), 150n, 10_000n, "down")).toBe(0n);
  });

  test("sats and formatting", () => {
    expect(toSatsFloor(msat(1_999))).toBe(1n);
    expect(formatMsat(msat(1_234_500))).toBe("1,234.5 sat");
    expect(formatMsat(msat(7))).toBe("0.007 sat");
    expect(formatMsat(msat(2_000))).toBe("2 sat");
  });
});

describe("amounts as people type them", () => {
  test("sat and msat suffixes; a bare number in the unit the flag names", () => {
    expect(parseAmountText("5000sat", "msat")).toBe(msat(5_000_000));
    expect(parseAmountText("2.5sat", "msat")).toBe(msat(2_500));
    expect(parseAmountText("0.001 sat", "sat")).toBe(msat(1));
    expect(parseAmountText("1500msat", "sat")).toBe(msat(1_500));
    expect(parseAmountText("1500", "msat")).toBe(msat(1_500));
    expect(parseAmountText("1500", "sat")).toBe(msat(1_500_000));
    expect(parseAmountText(" 7 ", "sat")).toBe(msat(7_000));
  });
  test("fractions of a msat, signs, exponents, text and more than 21M BTC are not amounts", () => {
    for (const bad of [
      "1.5msat",
      "0.0001sat",
      "-5",
      "+5",
      "1e3",
      "5 bitcoin",
      "",
      "sat",
      "2.5",
      "9999999999999999sat",
    ]) {
      expect([bad, parseAmountText(bad, "msat")]).toEqual([bad, undefined]);
    }
    expect(parseAmountText("2.5", "sat")).toBe(msat(2_500));
  });
});
