import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MNIST_DIR, SHARED_MODELS, tempDir } from "../../../../test/helpers/paths.ts";
import type { InferenceEvent, LocalModel, Tensor, TensorRequest } from "../../../runtime/engine.ts";
import { createOnnxEngine, type OnnxEngine } from "../../../runtime/onnx/engine.ts";
import { readExpected } from "../../../runtime/onnx/inputs/expected.ts";
import { preprocess } from "../../../runtime/onnx/inputs/preprocess.ts";
import { openImageInput } from "../../../runtime/onnx/inputs/source.ts";
import { DYNAMIC_BATCH_GRAPH, onnxModel, visionSpec } from "../../../runtime/onnx/test-models.ts";
import { type InferService, inferProtocol } from "./index.ts";
import { MAX_REQUEST_FRAME_BYTES, tensorBytes } from "./messages.ts";
import { connect, type TestHost, testHost } from "./test-hosts.ts";

// Real onnxruntime on mnist-8 (and tiny real models for float16 / int64) behind real QUIC hosts.
const MNIST: LocalModel = {
  name: "mnist-8",
  runtime: "onnx",
  path: join(SHARED_MODELS, "mnist-8.onnx"),
  sha256: "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf",
};
const IMAGES = 100;
const dir = tempDir("infernet-infer-onnx-");
/** float16 in, float16 out; and float32 in with an int64 output (its shape). */
const HALF: LocalModel = { name: "half", runtime: "onnx", path: join(dir.path, "half.onnx"), sha256: "a".repeat(64) };
const SHAPE: LocalModel = {
  name: "shape",
  runtime: "onnx",
  path: join(dir.path, "shape.onnx"),
  sha256: "b".repeat(64),
};

let local: OnnxEngine;
let served: OnnxEngine;
let provider: TestHost;
let client: TestHost;
let infer: InferService;
let images: Tensor;

beforeAll(async () => {
  writeFileSync(
    HALF.path,
    onnxModel({
      inputs: [{ name: "h", type: "float16", shape: ["N", 4] }],
      outputs: [{ name: "o", type: "float16", shape: ["N", 4] }],
      nodes: [{ op: "Identity", inputs: ["h"], outputs: ["o"] }],
    }),
  );
  writeFileSync(SHAPE.path, onnxModel(DYNAMIC_BATCH_GRAPH));
  local = createOnnxEngine();
  served = createOnnxEngine();
  const models = new Map([MNIST, HALF, SHAPE].map((m) => [m.sha256 as string, m]));
  provider = await testHost({ infer: inferProtocol({ served: () => models, engines: { onnx: served } }) });
  client = await testHost({ infer: inferProtocol() });
  await connect(client, provider);
  infer = client.services.infer as InferService;
  await using source = await openImageInput(join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"));
  const batch = await source.next(IMAGES);
  images = preprocess(batch?.images ?? [], visionSpec("mnist-8"), "float32");
});

afterAll(async () => {
  await Promise.all([client?.stop(), provider?.stop()]);
  await Promise.all([local?.dispose(), served?.dispose()]);
  rmSync(dir.path, { recursive: true, force: true });
});

async function outputsOf(events: AsyncIterable<InferenceEvent>): Promise<Record<string, Tensor>> {
  let outputs: Record<string, Tensor> | undefined;
  let done = false;
  for await (const e of events) {
    if (e.type === "tensors") outputs = e.outputs;
    if (e.type === "done") done = true;
  }
  if (!outputs || !done) throw new Error("no tensors or no done event");
  return outputs;
}

const ref = (m: LocalModel) => ({ name: m.name, sha256: m.sha256 as string });

/** Element type, dims and every byte equal. */
function expectSame(got: Tensor | undefined, want: Tensor | undefined): void {
  expect(got?.type).toBe(want?.type as Tensor["type"]);
  expect(got?.dims).toEqual(want?.dims as number[]);
  expect(got?.data.constructor).toBe(want?.data.constructor as Tensor["data"]["constructor"]);
  expect(Buffer.from(tensorBytes(got as Tensor)).equals(Buffer.from(tensorBytes(want as Tensor)))).toBe(true);
}

function argmax(logits: Float32Array, row: number): number {
  const r = Array.from(logits.subarray(row * 10, row * 10 + 10));
  return r.indexOf(Math.max(...r));
}

describe("remote ONNX over QUIC", () => {
  test("mnist-8 on 100 real MNIST images: remote logits equal local ones bit for bit", async () => {
    const request: TensorRequest = { kind: "tensor", inputs: { Input3: images } };
    const want = await outputsOf(local.run(MNIST, request));
    const got = await outputsOf(infer.infer(provider.peerId, ref(MNIST), request));
    expectSame(got.Plus214_Output_0, want.Plus214_Output_0);
    const labels = await readExpected(join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz"), undefined);
    const logits = got.Plus214_Output_0?.data as Float32Array;
    const wantLogits = want.Plus214_Output_0?.data as Float32Array;
    let correct = 0;
    for (let i = 0; i < IMAGES; i++) {
      expect(argmax(logits, i)).toBe(argmax(wantLogits, i));
      if (argmax(logits, i) === labels[i]) correct++;
    }
    // mnist-8 gets 98 of the first 100 test images right (9,890 of all 10,000).
    expect(correct).toBe(98);
  });

  test("the same images one request each give the same answers", async () => {
    const want = (await outputsOf(local.run(MNIST, { kind: "tensor", inputs: { Input3: images } }))).Plus214_Output_0
      ?.data as Float32Array;
    for (let i = 0; i < IMAGES; i++) {
      const one: Tensor = { type: "float32", dims: [1, 1, 28, 28], data: images.data.subarray(i * 784, (i + 1) * 784) };
      const got = await outputsOf(
        infer.infer(provider.peerId, ref(MNIST), { kind: "tensor", inputs: { Input3: one } }),
      );
      const row = want.subarray(i * 10, i * 10 + 10);
      expect(Array.from(got.Plus214_Output_0?.data as Float32Array)).toEqual(Array.from(row));
    }
  });

  test("float16 and int64 tensors cross the wire exactly; requested outputs only", async () => {
    const h: Tensor = {
      type: "float16",
      dims: [2, 4],
      data: new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0, 0x8000, 0x3555, 0x4248]),
    };
    expectSame((await outputsOf(infer.infer(provider.peerId, ref(HALF), { kind: "tensor", inputs: { h } }))).o, h);
    const x: Tensor = { type: "float32", dims: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) };
    const request: TensorRequest = { kind: "tensor", inputs: { x }, outputs: ["s"] };
    const got = await outputsOf(infer.infer(provider.peerId, ref(SHAPE), request));
    expect(Object.keys(got)).toEqual(["s"]);
    expectSame(got.s, (await outputsOf(local.run(SHAPE, request))).s);
    expect(Array.from(got.s?.data as BigInt64Array)).toEqual([2n, 3n]);
  });

  test("a wrong input shape is the engine's invalid-input, sent back", async () => {
    const bad: Tensor = { type: "float32", dims: [1, 1, 27, 28], data: new Float32Array(27 * 28) };
    let error: unknown;
    try {
      await outputsOf(infer.infer(provider.peerId, ref(MNIST), { kind: "tensor", inputs: { Input3: bad } }));
    } catch (err) {
      error = err;
    }
    expect((error as { code?: string }).code).toBe("invalid-input");
    expect((error as Error).message).toMatch(/Input3/);
  });

  test("a request over the frame limit is refused before anything is sent", async () => {
    const floats = MAX_REQUEST_FRAME_BYTES / 4 + 1;
    const big: Tensor = { type: "float32", dims: [floats], data: new Float32Array(floats) };
    let error: unknown;
    try {
      await outputsOf(infer.infer(provider.peerId, ref(MNIST), { kind: "tensor", inputs: { Input3: big } }));
    } catch (err) {
      error = err;
    }
    expect((error as Error).name).toBe("InvalidInputError");
    expect((error as Error).message).toMatch(/at most/);
  });
});
