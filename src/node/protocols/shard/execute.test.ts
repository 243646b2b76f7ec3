import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { MNIST_DIR, SHARED_MODELS } from "../../../../test/helpers/paths.ts";
import type { Shard, ShardResult } from "../../../jobs/records.ts";
import type { LocalModel, Tensor } from "../../../runtime/engine.ts";
import { createOnnxEngine, type OnnxEngine } from "../../../runtime/onnx/engine.ts";
import type { RawImage } from "../../../runtime/onnx/inputs/image.ts";
import { openImageInput } from "../../../runtime/onnx/inputs/source.ts";
import { concatBatch } from "../../../runtime/onnx/tensors.ts";
import { executeShard, visionSpecOf } from "./execute.ts";

// executeShard on its own, with the real onnxruntime and mnist-8: how a result is cut into pieces.
const MNIST: LocalModel = {
  name: "renamed-by-a-peer",
  runtime: "onnx",
  path: join(SHARED_MODELS, "mnist-8.onnx"),
  sha256: "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf",
};
const RECORDS = 45;

let onnx: OnnxEngine;
let images: RawImage[];

beforeAll(async () => {
  onnx = createOnnxEngine();
  await using source = await openImageInput(join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"));
  images = (await source.next(RECORDS))?.images ?? [];
});

afterAll(async () => await onnx?.dispose());

async function run(shard: Shard, batchRecords: number, maxPartialBytes?: number) {
  const pieces: { first: number; result: ShardResult }[] = [];
  const usage = await executeShard(MNIST, shard, async (first, result) => void pieces.push({ first, result }), {
    engines: { onnx },
    batchRecords,
    self: "me",
    signal: new AbortController().signal,
    ...(maxPartialBytes ? { maxPartialBytes } : {}),
  });
  return { pieces, usage };
}

const output = (r: ShardResult): Tensor => {
  if (r.kind !== "tensor") throw new Error("not a tensor result");
  return r.output;
};

test("the vision spec comes from the catalog by sha256, whatever the model is called", () => {
  expect(visionSpecOf(MNIST)?.input).toBe("Input3");
  expect(visionSpecOf({ ...MNIST, sha256: "d".repeat(64) })).toBeUndefined();
});

test("batches become pieces in record order; a piece over the byte limit is cut into rows that fit", async () => {
  const shard: Shard = { index: 4, start: 2000, count: RECORDS, payload: { kind: "images", images } };
  const whole = await run(shard, 100);
  expect(whole.pieces.map((p) => p.first)).toEqual([0]);
  expect(whole.usage.records).toBe(RECORDS);
  // 10 float32 logits a row: 400 bytes hold 10 rows.
  const cut = await run(shard, 25, 400);
  expect(cut.pieces.map((p) => p.first)).toEqual([0, 10, 20, 25, 35]);
  expect(cut.pieces.map((p) => output(p.result).dims[0])).toEqual([10, 10, 5, 10, 10]);
  expect(cut.pieces.every((p) => p.result.shard === 4 && p.result.providers[0] === "me")).toBe(true);
  const joined = concatBatch(cut.pieces.map((p) => output(p.result)));
  expect(Array.from(joined.data as Float32Array)).toEqual(
    Array.from(output((whole.pieces[0] as { result: ShardResult }).result).data as Float32Array),
  );
});

test("an aborted signal stops the shard before the next batch", async () => {
  const controller = new AbortController();
  const shard: Shard = { index: 0, start: 0, count: RECORDS, payload: { kind: "images", images } };
  const firsts: number[] = [];
  const running = executeShard(
    MNIST,
    shard,
    async (first) => {
      firsts.push(first);
      controller.abort(new Error("stop"));
    },
    { engines: { onnx }, batchRecords: 10, self: "me", signal: controller.signal },
  );
  await expect(running).rejects.toThrow();
  expect(firsts).toEqual([0]);
});
