import { describe, expect, test } from "bun:test";
import { DEFAULT_REDUNDANCY, MAX_SPEC_BYTES, parseJobSpec, parseJobSpecJson, shardRanges } from "./spec.ts";

const GOOD = {
  model: { name: "stories260k", sha256: "ef".repeat(32) },
  input: { kind: "prompts", path: "prompts.jsonl" },
  shardCount: 8,
  maxPriceMsat: 5_000,
  deadlineMs: 2_000_000_000_000,
  idempotencyKey: "client-42",
};

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return `${(err as Error).name}: ${(err as Error).message}`;
  }
  return "no error";
}

describe("job spec", () => {
  test("a valid spec parses, with redundancy defaulting to 2", () => {
    const spec = parseJobSpec(GOOD);
    expect(spec.redundancy).toBe(DEFAULT_REDUNDANCY);
    expect(parseJobSpecJson(JSON.stringify({ ...GOOD, redundancy: 3, preferredAggregator: "12D3Koo" }))).toMatchObject({
      redundancy: 3,
      preferredAggregator: "12D3Koo",
    });
  });

  test("a splitter's plan becomes contiguous ranges, the last one short", () => {
    expect(parseJobSpec({ ...GOOD, shardCount: undefined }).shardCount).toBeUndefined();
    expect(shardRanges({ records: 1_001, shardSize: 500, shardCount: 3 })).toEqual([
      { start: 0, count: 500 },
      { start: 500, count: 500 },
      { start: 1_000, count: 1 },
    ]);
  });

  test("bad specs are refused with InvalidInputError naming the field", () => {
    expect(messageOf(() => parseJobSpec({ ...GOOD, model: { name: "x", sha256: "nope" } }))).toBe(
      "InvalidInputError: invalid job spec: model.sha256: a lowercase hex sha256",
    );
    expect(messageOf(() => parseJobSpec({ ...GOOD, shardSize: 10 }))).toMatch(/shardSize or shardCount, not both/);
    expect(messageOf(() => parseJobSpec({ ...GOOD, input: { kind: "video", path: "x" } }))).toMatch(
      /^InvalidInputError: .*input/,
    );
    expect(messageOf(() => parseJobSpec({ ...GOOD, surprise: 1 }))).toMatch(/InvalidInputError/);
    expect(messageOf(() => parseJobSpec({ ...GOOD, redundancy: 99 }))).toMatch(/redundancy/);
    expect(messageOf(() => parseJobSpecJson("{"))).toBe("InvalidInputError: job spec is not valid JSON");
    expect(messageOf(() => parseJobSpecJson(" ".repeat(MAX_SPEC_BYTES + 1)))).toMatch(/larger than/);
  });
});
