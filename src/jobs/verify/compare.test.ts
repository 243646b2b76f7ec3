import { expect, test } from "bun:test";
import type { ShardResult } from "../records.ts";
import { compareResults, DEFAULT_TOLERANCE, half, sameAnswer } from "./compare.ts";

function scores(rows: number[][]): ShardResult {
  return {
    kind: "tensor",
    shard: 0,
    providers: ["p"],
    output: { type: "float32", dims: [rows.length, rows[0]?.length ?? 0], data: Float32Array.from(rows.flat()) },
  };
}

const text = (outputs: string[]): ShardResult => ({ kind: "text", shard: 0, providers: ["p"], outputs });

test("classifier scores within the tolerance agree; a changed top class or a larger gap does not", () => {
  const base = scores([
    [1, 5, 2],
    [9, 0.5, 0.25],
  ]);
  const close = scores([
    [1 + 1e-5, 5 - 2e-4, 2],
    [9, 0.5, 0.25 + 1e-5],
  ]);
  expect(compareResults(close, base)).toEqual({ same: true });
  const far = scores([
    [1, 5.1, 2],
    [9, 0.5, 0.25],
  ]);
  expect(compareResults(far, base)).toEqual({ same: false, records: [0] });
  // Within the tolerance, but the top class flips (a near tie): a different answer.
  const tie = scores([[1, 2, 2 + 1e-6]]);
  const tieOther = scores([[1, 2 + 1e-6, 2]]);
  expect(sameAnswer(tie, tieOther)).toBe(false);
});

test("NaN never agrees; a different shape, type or record count is not comparable record by record", () => {
  expect(compareResults(scores([[Number.NaN, 1]]), scores([[Number.NaN, 1]]))).toEqual({ same: false, records: [0] });
  const cut = scores([[1, 5]]);
  const full = scores([[1, 5, 2]]);
  expect(compareResults(cut, full)).toMatchObject({ same: false, records: "all" });
  expect(
    compareResults(
      scores([[1, 2]]),
      scores([
        [1, 2],
        [3, 4],
      ]),
    ),
  ).toMatchObject({ same: false, records: "all" });
  expect(compareResults(text(["a"]), scores([[1]]))).toMatchObject({ same: false, records: "all" });
});

test("text agrees only exactly, record by record", () => {
  expect(compareResults(text(["a", "b", "c"]), text(["a", "B", "c"]))).toEqual({ same: false, records: [1] });
  expect(sameAnswer(text(["x"]), text(["x"]))).toBe(true);
});

test("integer tensors agree only exactly; float16 is compared by value", () => {
  const ints = (v: number[]): ShardResult => ({
    kind: "tensor",
    shard: 0,
    providers: [],
    output: { type: "int32", dims: [v.length, 1], data: Int32Array.from(v) },
  });
  expect(compareResults(ints([1, 2]), ints([1, 3]))).toEqual({ same: false, records: [1] });
  expect(half(0x3c00)).toBe(1);
  expect(half(0xc000)).toBe(-2);
  expect(Number.isNaN(half(0x7e00))).toBe(true);
  expect(DEFAULT_TOLERANCE.rtol).toBeGreaterThan(0);
});
