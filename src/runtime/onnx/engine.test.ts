import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LocalModel, Tensor, TensorRequest, Usage } from "../engine.ts";
import { createOnnxEngine, type OnnxEngine } from "./engine.ts";
import { toHalfArray } from "./float16.ts";
import { readExpected } from "./inputs/expected.ts";
import { preprocess } from "./inputs/preprocess.ts";
import { openImageInput } from "./inputs/source.ts";
import { DYNAMIC_BATCH_GRAPH, onnxModel, visionSpec } from "./test-models.ts";

const SHARED = join(import.meta.dir, "../../../../shared");
const MNIST: LocalModel = { name: "mnist-8", runtime: "onnx", path: join(SHARED, "models/mnist-8.onnx") };
const SQUEEZENET: LocalModel = {
  name: "squeezenet1.1",
  runtime: "onnx",
  path: join(SHARED, "models/squeezenet1.1-fp16.onnx"),
};
const MNIST_SPEC = visionSpec("mnist-8");

let dir: string;
let engine: OnnxEngine;
const fixtures: Record<string, LocalModel> = {};

async function fixture(name: string, bytes: Uint8Array): Promise<LocalModel> {
  const path = join(dir, `${name}.onnx`);
  await writeFile(path, bytes);
  return { name, runtime: "onnx", path };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "infernet-onnx-"));
  engine = createOnnxEngine();
  fixtures.dynamic = await fixture("dynamic", onnxModel(DYNAMIC_BATCH_GRAPH));
  fixtures.pairs = await fixture(
    "pairs",
    onnxModel({
      inputs: [
        { name: "a", type: "float32", shape: [2, 3] },
        { name: "b", type: "float32", shape: [2, 3] },
      ],
      outputs: [{ name: "sum", type: "float32", shape: [2, 3] }],
      nodes: [{ op: "Add", inputs: ["a", "b"], outputs: ["sum"] }],
    }),
  );
  fixtures.half = await fixture(
    "half",
    onnxModel({
      inputs: [{ name: "h", type: "float16", shape: ["N", 4] }],
      outputs: [{ name: "o", type: "float16", shape: ["N", 4] }],
      nodes: [{ op: "Identity", inputs: ["h"], outputs: ["o"] }],
    }),
  );
});

afterAll(async () => {
  await engine.dispose();
  await rm(dir, { recursive: true, force: true });
});

async function run(model: LocalModel, request: Omit<TensorRequest, "kind">, signal?: AbortSignal) {
  let outputs: Record<string, Tensor> | undefined;
  let usage: Usage | undefined;
  const events: string[] = [];
  for await (const event of engine.run(model, { kind: "tensor", ...request }, signal ? { signal } : {})) {
    events.push(event.type);
    if (event.type === "tensors") outputs = event.outputs;
    if (event.type === "done") usage = event.usage;
  }
  expect(events).toEqual(["tensors", "done"]);
  return { outputs: outputs as Record<string, Tensor>, usage: usage as Usage };
}

function f32(dims: number[], fill: (i: number) => number): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  return { type: "float32", dims, data: Float32Array.from({ length: n }, (_, i) => fill(i)) };
}

function csvValues(text: string): number[] {
  return text
    .trim()
    .split(/\r?\n/)
    .slice(1)
    .map((line) => Number(line.split(",")[1]));
}

describe("ONNX engine on the real models", () => {
  test("mnist-8 classifies exactly 9,890 of the 10,000 test images (pixel/255), splitting its fixed batch of 1", async () => {
    await using source = await openImageInput(join(SHARED, "data/mnist/t10k-images-idx3-ubyte.gz"));
    const batch = await source.next(source.records);
    expect(batch?.images?.length).toBe(10_000);
    const input = preprocess(batch?.images ?? [], MNIST_SPEC, "float32");
    expect(input.dims).toEqual([10_000, 1, 28, 28]);
    const { outputs, usage } = await run(MNIST, { inputs: { Input3: input } });
    const logits = outputs.Plus214_Output_0 as Tensor;
    expect(logits.dims).toEqual([10_000, 10]);
    const expected = await readExpected(join(SHARED, "data/mnist/t10k-labels-idx1-ubyte.gz"), undefined);
    let correct = 0;
    for (let r = 0; r < 10_000; r++) {
      const row = Array.from(logits.data.subarray(r * 10, r * 10 + 10) as Float32Array);
      if (row.indexOf(Math.max(...row)) === expected[r]) correct++;
    }
    expect(correct).toBe(9_890);
    expect(usage.inputTokens).toBe(10_000);
    expect(usage.outputTokens).toBe(10_000);
    expect(usage.computeMs).toBeGreaterThan(0);
    expect(usage.firstOutputMs).toBeGreaterThan(0);
    expect(usage.firstOutputMs).toBeLessThan(usage.computeMs);
  });

  test("mnist-8 on the WinML reference digit (raw 0-255 input) gives the reference logits", async () => {
    await using source = await openImageInput(join(SHARED, "data/reference/mnist-winml/mnist_28.png"));
    const batch = await source.next(1);
    const input = preprocess(batch?.images ?? [], { ...MNIST_SPEC, scale: 1 }, "float32");
    const csv = (await readFile(join(SHARED, "data/reference/mnist-winml/mnist_28.csv"), "utf8"))
      .trim()
      .split(/[,\s]+/)
      .map(Number);
    expect(Array.from(input.data as Float32Array)).toEqual(csv);
    const { outputs } = await run(MNIST, { inputs: { Input3: input } });
    const got = Array.from(outputs.Plus214_Output_0?.data as Float32Array);
    const want = csvValues(
      await readFile(join(SHARED, "data/reference/mnist-winml/Mnist_8_input_CPU.expected.csv"), "utf8"),
    );
    expect(want).toHaveLength(10);
    // Raw 0-255 input makes logits ~255x larger than usual, so float32 summation order (WinML's
    // convolution vs onnxruntime's) moves them by up to ~2.4 out of 6,081; both ONNX copies of the
    // model give the same onnxruntime result. Allow 0.1% of the largest logit.
    const tolerance = 1e-3 * Math.max(...want.map(Math.abs));
    for (const [i, v] of got.entries()) expect(Math.abs(v - (want[i] as number))).toBeLessThan(tolerance);
    expect(got.indexOf(Math.max(...got))).toBe(8);
  });

  test("squeezenet1.1-fp16 on the WinML fish (BGR, 0-255, float16 bits) matches the reference softmax", async () => {
    const raw = (await readFile(join(SHARED, "data/reference/squeezenet-fish/fish.csv"), "utf8"))
      .trim()
      .split(/[,\s]+/)
      .map(Number);
    expect(raw).toHaveLength(3 * 224 * 224);
    const fromCsv: Tensor = { type: "float16", dims: [1, 3, 224, 224], data: toHalfArray(raw) };
    // The catalog spec applied to fish.png must build exactly the tensor the WinML runner feeds.
    await using source = await openImageInput(join(SHARED, "data/reference/squeezenet-fish/fish.png"));
    const fromPng = preprocess((await source.next(1))?.images ?? [], visionSpec("squeezenet1.1"), "float16");
    expect(fromPng.dims).toEqual(fromCsv.dims);
    expect(
      Buffer.from((fromPng.data as Uint16Array).buffer).equals(Buffer.from((fromCsv.data as Uint16Array).buffer)),
    ).toBe(true);

    const { outputs } = await run(SQUEEZENET, { inputs: { data_0: fromPng } });
    const out = outputs.softmaxout_1 as Tensor;
    expect(out.type).toBe("float16");
    expect(out.dims).toEqual([1, 1000, 1, 1]);
    expect(out.data.constructor).toBe(Uint16Array);
    const { fromHalfArray } = await import("./float16.ts");
    const got = fromHalfArray(out.data as Uint16Array);
    const want = csvValues(
      await readFile(
        join(SHARED, "data/reference/squeezenet-fish/Squeezenet_fp16_fish_input_CPU.expected.csv"),
        "utf8",
      ),
    );
    expect(want).toHaveLength(1000);
    let worst = 0;
    want.forEach((w, i) => {
      worst = Math.max(worst, Math.abs((got[i] as number) - w));
    });
    // float16 has 11 significant bits: 0.7378 is representable to within ~2.4e-4.
    expect(worst).toBeLessThan(2e-3);
    expect(got.indexOf(Math.max(...got))).toBe(0);
    expect(got[0] as number).toBeCloseTo(0.7378, 2);
  });
});

describe("batching", () => {
  test("a free batch dimension runs the whole batch in one native call", async () => {
    const { outputs, usage } = await run(fixtures.dynamic as LocalModel, { inputs: { x: f32([5, 3], (i) => i) } });
    expect(Array.from(outputs.s?.data as BigInt64Array)).toEqual([5n, 3n]);
    expect(outputs.y?.dims).toEqual([5, 3]);
    expect(Array.from(outputs.y?.data as Float32Array)).toEqual(Array.from({ length: 15 }, (_, i) => 2 * i));
    expect(usage.inputTokens).toBe(5);
  });

  test("a fixed batch size takes whole multiples, split into runs and joined back in order", async () => {
    const a = f32([6, 3], (i) => i);
    const b = f32([6, 3], (i) => 100 * i);
    const { outputs } = await run(fixtures.pairs as LocalModel, { inputs: { a, b } });
    expect(outputs.sum?.dims).toEqual([6, 3]);
    expect(Array.from(outputs.sum?.data as Float32Array)).toEqual(Array.from({ length: 18 }, (_, i) => 101 * i));
    await expect(
      run(fixtures.pairs as LocalModel, { inputs: { a: f32([5, 3], () => 0), b: f32([5, 3], () => 0) } }),
    ).rejects.toThrow(/expects float32\[2,3\] \(records in multiples of 2\), got float32\[5,3\]/);
  });

  test("float16 goes through the native binding as half bits, both ways", async () => {
    const bits = toHalfArray([1, -2, 0.5, 65504, 0, 1e-7, -0, 3.140625]);
    const { outputs } = await run(fixtures.half as LocalModel, {
      inputs: { h: { type: "float16", dims: [2, 4], data: bits } },
    });
    expect(outputs.o?.type).toBe("float16");
    expect(outputs.o?.data.constructor).toBe(Uint16Array);
    expect(Array.from(outputs.o?.data as Uint16Array)).toEqual(Array.from(bits));
  });

  test("only the requested outputs come back", async () => {
    const { outputs } = await run(fixtures.dynamic as LocalModel, {
      inputs: { x: f32([1, 3], () => 1) },
      outputs: ["s"],
    });
    expect(Object.keys(outputs)).toEqual(["s"]);
  });
});

describe("bad requests fail before native code, with expected vs got", () => {
  const cases: [string, () => TensorRequest, RegExp][] = [
    [
      "an unknown input name",
      () => ({ kind: "tensor", inputs: { x: f32([1, 3], () => 0), z: f32([1, 3], () => 0) } }),
      /has no input "z"; it takes "x" float32\[N,3\]/,
    ],
    ["a missing input", () => ({ kind: "tensor", inputs: {} }), /needs input "x" float32\[N,3\]/],
    [
      "the wrong element type",
      () => ({ kind: "tensor", inputs: { x: { type: "int32", dims: [1, 3], data: new Int32Array(3) } } }),
      /expects float32\[N,3\], got int32\[1,3\]/,
    ],
    [
      "the wrong rank",
      () => ({ kind: "tensor", inputs: { x: f32([3], () => 0) } }),
      /expects float32\[N,3\] \(rank 2\), got float32\[3\]/,
    ],
    [
      "a wrong fixed dimension",
      () => ({ kind: "tensor", inputs: { x: f32([2, 4], () => 0) } }),
      /expects float32\[N,3\], got float32\[2,4\]/,
    ],
    [
      "too little data for the shape",
      () => ({ kind: "tensor", inputs: { x: { type: "float32", dims: [2, 3], data: new Float32Array(5) } } }),
      /needs 6 elements, the data has 5/,
    ],
    [
      "an empty batch",
      () => ({ kind: "tensor", inputs: { x: { type: "float32", dims: [0, 3], data: new Float32Array(0) } } }),
      /dimension 0 must be a positive whole number/,
    ],
    [
      "an unknown output",
      () => ({ kind: "tensor", inputs: { x: f32([1, 3], () => 0) }, outputs: ["nope"] }),
      /has no output "nope"/,
    ],
  ];
  for (const [what, request, message] of cases) {
    test(what, async () => {
      const error = await collect(fixtures.dynamic as LocalModel, request()).catch((e: unknown) => e);
      expect((error as Error).name).toBe("InvalidInputError");
      expect((error as Error).message).toMatch(message);
    });
  }

  test("a Float16Array never reaches the binding", async () => {
    const data = new Float16Array([1, 2, 3, 4]) as unknown as Uint16Array;
    const error = await collect(fixtures.half as LocalModel, {
      kind: "tensor",
      inputs: { h: { type: "float16", dims: [1, 4], data } },
    }).catch((e: unknown) => e);
    expect((error as Error).name).toBe("InvalidInputError");
    expect((error as Error).message).toMatch(/float16 data must be a Uint16Array of half bits/);
  });

  test("inputs with different record counts", async () => {
    const error = await collect(fixtures.pairs as LocalModel, {
      kind: "tensor",
      inputs: { a: f32([2, 3], () => 0), b: f32([4, 3], () => 0) },
    }).catch((e: unknown) => e);
    expect((error as Error).name).toBe("InvalidInputError");
    expect((error as Error).message).toMatch(/"b" has 4, others 2/);
  });

  test("a text prompt", async () => {
    const error = await collect(MNIST, { kind: "generate", prompt: "hi" } as never).catch((e: unknown) => e);
    expect((error as Error).name).toBe("InvalidInputError");
  });
});

describe("model files and the session cache", () => {
  test("a truncated, a non-ONNX and an empty file are IntegrityErrors; a missing one is FileNotFoundError", async () => {
    const whole = await readFile(MNIST.path);
    const truncated = await fixture("truncated", whole.subarray(0, 10_000));
    const garbage = await fixture("garbage", new TextEncoder().encode("this is not a model\n"));
    const empty = await fixture("empty", new Uint8Array(0));
    for (const model of [truncated, garbage, empty]) {
      const error = await engine.preload(model).catch((e: unknown) => e);
      expect((error as Error).name).toBe("IntegrityError");
      expect((error as Error).message).toContain(model.path);
    }
    const missing = await engine.preload({ ...MNIST, path: join(dir, "missing.onnx") }).catch((e: unknown) => e);
    expect((missing as Error).name).toBe("FileNotFoundError");
    // A failed load is not cached: once the file is good, the same path works.
    await writeFile(truncated.path, whole);
    await engine.preload(truncated);
  });

  test("least recently used sessions are released beyond the limit, and disposal is final", async () => {
    await using small = createOnnxEngine({ maxSessions: 1 });
    const x = { x: f32([1, 3], () => 1) };
    for (const model of [fixtures.dynamic, MNIST, fixtures.dynamic] as LocalModel[]) {
      const inputs = model === MNIST ? { Input3: f32([1, 1, 28, 28], () => 0) } : x;
      for await (const _ of small.run(model, { kind: "tensor", inputs })) {
        // drain
      }
    }
    // Concurrent runs on one model share its session.
    const results = await Promise.all(
      [1, 2, 3].map((n) =>
        collect(fixtures.dynamic as LocalModel, { kind: "tensor", inputs: { x: f32([n, 3], () => n) } }, small),
      ),
    );
    expect(results.map((r) => r.y?.dims[0])).toEqual([1, 2, 3]);
    await small.dispose();
    const error = await collect(fixtures.dynamic as LocalModel, { kind: "tensor", inputs: x }, small).catch(
      (e: unknown) => e,
    );
    expect((error as Error).name).toBe("RuntimeError");
  });

  test("a GGUF model is not the ONNX engine's", async () => {
    const error = await engine
      .preload({ name: "stories", runtime: "llama", path: join(SHARED, "models/stories260K.gguf") })
      .catch((e: unknown) => e);
    expect((error as Error).name).toBe("RuntimeError");
  });

  test("an aborted signal stops a split batch between runs", async () => {
    const controller = new AbortController();
    controller.abort();
    const before = await collect(
      MNIST,
      { kind: "tensor", inputs: { Input3: f32([4, 1, 28, 28], () => 0) } },
      engine,
      controller.signal,
    ).catch((e: unknown) => e);
    expect((before as Error).name).toBe("AbortedError");
    // 50,000 runs of one image take seconds; the abort lands after a few milliseconds, so an
    // AbortedError (not outputs) shows the loop stopped part-way.
    const big: Tensor = { type: "float32", dims: [50_000, 1, 28, 28], data: new Float32Array(50_000 * 784) };
    const later = new AbortController();
    setTimeout(() => later.abort(), 20);
    const during = await collect(MNIST, { kind: "tensor", inputs: { Input3: big } }, engine, later.signal).catch(
      (e: unknown) => e,
    );
    expect((during as Error).name).toBe("AbortedError");
  });
});

async function collect(
  model: LocalModel,
  request: TensorRequest,
  on: OnnxEngine = engine,
  signal?: AbortSignal,
): Promise<Record<string, Tensor>> {
  let outputs: Record<string, Tensor> = {};
  for await (const event of on.run(model, request, signal ? { signal } : {}))
    if (event.type === "tensors") outputs = event.outputs;
  return outputs;
}
