import { describe, expect, test } from "bun:test";
import {
  formatPrice,
  modelPrice,
  parsePriceFlag,
  priceFlags,
  satsPer1k,
  unitEstimateMsat,
  usagePrice,
} from "./pricing.ts";

describe("prices", () => {
  test("work costs the sum of its units at their rates, rounded down once, exactly", () => {
    const price = { tokensOut: 2_000, tokensIn: 500, computeSeconds: 1_000_000 };
    // 300 tokens out at 2 msat, 41 in at 0.5 msat, 1,234 ms at 1 sat/s: 600 + 20.5 + 1,234 = 1,854.5.
    expect<bigint>(usagePrice(price, { tokensOut: 300, tokensIn: 41, computeMs: 1_234 })).toBe(1_854n);
    expect<bigint>(usagePrice({ inferences: 20_000 }, { inferences: 500 })).toBe(10_000n);
    expect<bigint>(usagePrice({}, { tokensOut: 1_000_000 })).toBe(0n);
    expect<bigint>(usagePrice({ tokensOut: 1 }, { tokensOut: 999 })).toBe(0n);
    expect(() => usagePrice(price, { tokensOut: -1 })).toThrow(/not a count/);
    expect(() => usagePrice(price, { inferences: 1.5 })).toThrow(/not a count/);
  });

  test("a main-unit rate and an estimate with compute-seconds over the announced speed", () => {
    expect(satsPer1k({ tokensOut: 2_000 }, "llama")).toBe(2);
    expect(satsPer1k({ tokensOut: 2_000 }, "onnx")).toBe(0);
    expect(unitEstimateMsat({ inferences: 1_000, computeSeconds: 500_000 }, "onnx", 1_000)).toBe(1.5);
    expect(unitEstimateMsat({ inferences: 1_000, computeSeconds: 500_000 }, "onnx")).toBe(1);
    expect(formatPrice({ tokensOut: 2_000, tokensIn: 500 })).toBe("2 sat/1k tokens, 0.5 sat/1k prompt tokens");
    expect(formatPrice({})).toBe("free");
  });

  test("--price flags: a flat price, or a model's own, added up per model", () => {
    expect(parsePriceFlag("20")).toEqual({ sats: 20 });
    expect(parsePriceFlag("stories260k=2sat/1ktok")).toEqual({
      model: "stories260k",
      unit: "tokensOut",
      msatPer1k: 2_000,
    });
    expect(parsePriceFlag("mnist-8=1500msat/1kinf")).toEqual({
      model: "mnist-8",
      unit: "inferences",
      msatPer1k: 1_500,
    });
    expect(parsePriceFlag("m=0.001sat/s")).toEqual({ model: "m", unit: "computeSeconds", msatPer1k: 1_000 });
    const flags = priceFlags(["5", "stories260k=2sat/1ktok", "stories260k=0.5sat/1ktok-in"]);
    expect(modelPrice(flags, "stories260k", "llama", 10)).toEqual({ tokensOut: 2_000, tokensIn: 500 });
    expect(modelPrice(flags, "mnist-8", "onnx", 10)).toEqual({ inferences: 5_000 });
    expect(modelPrice(undefined, "mnist-8", "onnx", 10)).toEqual({ inferences: 10_000 });
  });

  test.each([
    ["-5", /not a number of sats/],
    ["cheap", /not a number of sats/],
    ["m=2/1ktok", /amount is a number with sat or msat/],
    ["m=2sat/1kbananas", /unit is one of/],
    ["m=2sat", /unit is one of/],
    ["m=1.5msat/1ktok", /msat are whole/],
    ["m=2sat/1ktok/extra", /amount is a number/],
    ["m=200000000sat/1ktok", /more than 1 BTC/],
    ["=2sat/1ktok", /not a number of sats/],
  ])("--price %p is refused, saying how to write one", (text, message) => {
    expect(() => parsePriceFlag(text)).toThrow(message);
    expect(() => parsePriceFlag(text)).toThrow(
      expect.objectContaining({ name: "UsageError", hint: expect.stringContaining("--price 20") }),
    );
  });
});
