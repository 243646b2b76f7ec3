/**
 * ONNX engine throughput against onnxruntime-node used directly: the same 10,000 MNIST test images,
 * the same session settings, the same process, rounds alternated so neither side gets a warmer
 * machine. Also prints the thread-count figures behind SMALL_MODEL_BYTES, and the whole CLI run.
 * Usage: bun bench/onnx.ts [rounds]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { findModel } from "../src/models/catalog.ts";
import type { LocalModel, Tensor } from "../src/runtime/engine.ts";
import { createOnnxEngine } from "../src/runtime/onnx/engine.ts";
import { readExpected } from "../src/runtime/onnx/inputs/expected.ts";
import { preprocess } from "../src/runtime/onnx/inputs/preprocess.ts";
import { openImageInput } from "../src/runtime/onnx/inputs/source.ts";
import { BUN, CLI, MIRROR, machine, median, spawnTimed } from "./lib.ts";

const ROUNDS = Number(process.argv[2] ?? 5);
const DATA = join(MIRROR, "../data/mnist");
const MNIST: LocalModel = { name: "mnist-8", runtime: "onnx", path: join(MIRROR, "mnist-8.onnx") };
const SQUEEZENET = join(MIRROR, "squeezenet1.1-fp16.onnx");
const IMAGES = 10_000;
/** Records per engine call in the CLI (its default --batch). */
const CLI_BATCH = 64;
const SETTINGS = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: "sequential",
  graphOptimizationLevel: "all",
} as const;

const spec = findModel("mnist-8")?.vision;
if (!spec) throw new Error("mnist-8 has no vision spec");
await using source = await openImageInput(join(DATA, "t10k-images-idx3-ubyte.gz"));
const input = preprocess((await source.next(IMAGES))?.images ?? [], spec, "float32");
const data = input.data as Float32Array;
const expected = await readExpected(join(DATA, "t10k-labels-idx1-ubyte.gz"), undefined);

function correct(logits: Float32Array): number {
  let n = 0;
  for (let r = 0; r < IMAGES; r++) {
    const row = Array.from(logits.subarray(r * 10, r * 10 + 10));
    if (row.indexOf(Math.max(...row)) === expected[r]) n++;
  }
  return n;
}

const session = await ort.InferenceSession.create(MNIST.path, SETTINGS);
async function direct(): Promise<number> {
  const out = new Float32Array(IMAGES * 10);
  for (let i = 0; i < IMAGES; i++) {
    const feed = new ort.Tensor("float32", data.subarray(i * 784, (i + 1) * 784), [1, 1, 28, 28]);
    const result = await session.run({ Input3: feed });
    out.set(result.Plus214_Output_0?.data as Float32Array, i * 10);
  }
  return correct(out);
}

const engine = createOnnxEngine({ intraOpNumThreads: SETTINGS.intraOpNumThreads });
await engine.preload(MNIST);
async function viaEngine(batch: number): Promise<number> {
  const out = new Float32Array(IMAGES * 10);
  for (let start = 0; start < IMAGES; start += batch) {
    const n = Math.min(batch, IMAGES - start);
    const tensor: Tensor = {
      type: "float32",
      dims: [n, 1, 28, 28],
      data: data.subarray(start * 784, (start + n) * 784),
    };
    for await (const event of engine.run(MNIST, { kind: "tensor", inputs: { Input3: tensor } })) {
      if (event.type === "tensors") out.set(event.outputs.Plus214_Output_0?.data as Float32Array, start * 10);
    }
  }
  return correct(out);
}

const rates: Record<string, number[]> = { direct: [], engine: [], [`engine, ${CLI_BATCH} per call`]: [] };
const accuracy: Record<string, number> = {};
const contenders: [string, () => Promise<number>][] = [
  ["direct", direct],
  ["engine", () => viaEngine(IMAGES)],
  [`engine, ${CLI_BATCH} per call`, () => viaEngine(CLI_BATCH)],
];
await direct(); // warm-up: first runs allocate arenas
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, fn] of contenders) {
    const start = performance.now();
    accuracy[name] = await fn();
    rates[name]?.push((IMAGES * 1000) / (performance.now() - start));
  }
}

console.log(`machine: ${machine()}`);
console.log(`mnist-8, ${IMAGES} test images at batch 1, intraOpNumThreads 1, median of ${ROUNDS} rounds:`);
for (const [name, xs] of Object.entries(rates)) {
  console.log(`  ${name.padEnd(24)} ${median(xs).toFixed(0).padStart(7)} images/s  (${accuracy[name]} correct)`);
}
const ratio = median(rates.engine ?? []) / median(rates.direct ?? []);
console.log(`  engine / direct: ${ratio.toFixed(3)} (target >= 0.9)`);

async function perImageMs(
  path: string,
  threads: number,
  dims: number[],
  type: "float32" | "float16",
  runs: number,
): Promise<number> {
  const s = await ort.InferenceSession.create(path, { ...SETTINGS, intraOpNumThreads: threads });
  const size = dims.reduce((a, b) => a * b, 1);
  const feed = {
    type,
    dims,
    data: type === "float16" ? new Uint16Array(size).fill(0x3c00) : new Float32Array(size),
    location: "cpu",
  };
  const name = s.inputNames[0] as string;
  const feeds = { [name]: feed } as unknown as ort.InferenceSession.FeedsType;
  for (let i = 0; i < Math.ceil(runs / 10); i++) await s.run(feeds);
  const start = performance.now();
  for (let i = 0; i < runs; i++) await s.run(feeds);
  const ms = (performance.now() - start) / runs;
  await s.release();
  return ms;
}

console.log("threads per operator (intraOpNumThreads; 0 = onnxruntime's default, one per core), median of rounds:");
for (const [label, path, dims, type, runs] of [
  ["mnist-8", MNIST.path, [1, 1, 28, 28], "float32", 5_000],
  ["squeezenet1.1-fp16", SQUEEZENET, [1, 3, 224, 224], "float16", 40],
] as const) {
  const byThreads: Record<number, number[]> = { 1: [], 0: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of [1, 0]) byThreads[t]?.push(await perImageMs(path, t, [...dims], type, runs));
  }
  const [one, all] = [median(byThreads[1] ?? []), median(byThreads[0] ?? [])];
  console.log(`  ${label.padEnd(20)} 1 thread ${fmt(one)}   default ${fmt(all)}`);
}

function fmt(ms: number): string {
  return ms < 1 ? `${(1000 / ms).toFixed(0)} images/s` : `${ms.toFixed(2)} ms/image`;
}

const home = mkdtempSync(join(tmpdir(), "infernet-bench-onnx-"));
try {
  const cli = await spawnTimed(
    [
      BUN,
      CLI,
      "run",
      "mnist-8",
      "--input",
      join(DATA, "t10k-images-idx3-ubyte.gz"),
      "--labels",
      join(DATA, "t10k-labels-idx1-ubyte.gz"),
    ],
    { INFERNET_HOME: home, INFERNET_MODEL_MIRROR: MIRROR },
  );
  const summary = cli.stderr.trim().split("\n").at(-1);
  console.log(
    `CLI: infernet run mnist-8 over the 10,000 test images: ${(cli.wallMs / 1000).toFixed(2)} s wall, process start to exit (${summary})`,
  );
} finally {
  rmSync(home, { recursive: true, force: true });
}

await engine.dispose();
await session.release();
