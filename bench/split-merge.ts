/**
 * Splitter and merger throughput on the 10,000 MNIST test images: split the gzipped IDX file into
 * 500-record shards, and merge per-shard classifications (computed once, before timing, by the real
 * mnist-8 engine) into labels JSONL plus a raw .npy, in order and shuffled. Also merges the same
 * records as 10,000 one-record shards, the aggregator's tiny-shard case. Medians over rounds.
 * Usage: bun bench/split-merge.ts [rounds=5]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createMerger } from "../src/jobs/merge.ts";
import { planShards, type ShardResult } from "../src/jobs/records.ts";
import { splitImages } from "../src/jobs/split.ts";
import { findModel } from "../src/models/catalog.ts";
import type { LocalModel, Tensor } from "../src/runtime/engine.ts";
import { createOnnxEngine } from "../src/runtime/onnx/engine.ts";
import { preprocess } from "../src/runtime/onnx/inputs/preprocess.ts";
import { MIRROR, machine, median } from "./lib.ts";

const ROUNDS = Number(process.argv[2] ?? 5);
const IMAGES = join(MIRROR, "../data/mnist/t10k-images-idx3-ubyte.gz");
const MNIST: LocalModel = { name: "mnist-8", runtime: "onnx", path: join(MIRROR, "mnist-8.onnx") };
const SHARD_SIZE = 500;
const RECORDS = 10_000;

const spec = findModel("mnist-8")?.vision;
if (!spec) throw new Error("mnist-8 has no vision spec");
const dir = mkdtempSync(join(tmpdir(), "infernet-bench-merge-"));

async function split(): Promise<number> {
  const start = performance.now();
  await using splitter = await splitImages(IMAGES, { shardSize: SHARD_SIZE });
  const shards = [];
  for await (const shard of splitter.shards()) shards.push(shard);
  const ms = performance.now() - start;
  if (shards.length !== RECORDS / SHARD_SIZE) throw new Error(`${shards.length} shards`);
  return ms;
}

async function classifyAll(): Promise<Tensor[]> {
  await using engine = createOnnxEngine();
  await using splitter = await splitImages(IMAGES, { shardSize: SHARD_SIZE });
  const outputs: Tensor[] = [];
  for await (const shard of splitter.shards()) {
    if (shard.payload.kind !== "images" || !spec) throw new Error("expected images");
    const input = preprocess(shard.payload.images, spec, spec.inputType);
    for await (const event of engine.run(MNIST, { kind: "tensor", inputs: { [spec.input]: input } })) {
      const out = event.type === "tensors" ? event.outputs[spec.output] : undefined;
      if (out) outputs.push(out);
    }
  }
  return outputs;
}

/** Re-cuts the logits into shards of `size` records. */
function results(logits: Tensor[], size: number): ShardResult[] {
  const all = new Float32Array(RECORDS * 10);
  let at = 0;
  for (const t of logits) {
    all.set(t.data as Float32Array, at);
    at += t.data.length;
  }
  return Array.from({ length: Math.ceil(RECORDS / size) }, (_, shard) => {
    const data = all.slice(shard * size * 10, Math.min(RECORDS, (shard + 1) * size) * 10);
    return {
      kind: "tensor",
      shard,
      providers: [`peer-${shard % 3}`],
      output: { type: "float32", dims: [data.length / 10, 10], data },
    };
  });
}

function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

async function merge(shards: ShardResult[], size: number, name: string): Promise<number> {
  const start = performance.now();
  await using merger = await createMerger({
    plan: planShards(RECORDS, { shardSize: size }),
    kind: "classification",
    outputPath: join(dir, `${name}.jsonl`),
    tensorPath: join(dir, `${name}.npy`),
    outputKind: spec?.outputKind,
    classNames: spec?.labels,
    recordShape: [10],
  });
  for (const r of shards) await merger.add(r);
  await merger.finish();
  return performance.now() - start;
}

try {
  const logits = await classifyAll();
  const big = results(logits, SHARD_SIZE);
  const tiny = results(logits, 1);
  const times: Record<string, number[]> = { split: [], inOrder: [], shuffled: [], tiny: [] };
  await split(); // warm-up: gunzip and file cache
  for (let round = 0; round < ROUNDS; round++) {
    times.split?.push(await split());
    times.inOrder?.push(await merge(big, SHARD_SIZE, `in-order-${round}`));
    times.shuffled?.push(await merge(shuffle(big), SHARD_SIZE, `shuffled-${round}`));
    times.tiny?.push(await merge(shuffle(tiny), 1, `tiny-${round}`));
  }
  const rate = (ms: number[]) => Math.round(RECORDS / (median(ms) / 1000)).toLocaleString("en");
  const med = (ms: number[]) => median(ms).toFixed(1);
  console.log(`# split + merge, MNIST 10k, ${machine()}, median of ${ROUNDS}`);
  console.log(
    `split  (IDX.gz -> 20 x 500-record shards): ${med(times.split ?? [])} ms, ${rate(times.split ?? [])} records/s`,
  );
  console.log(
    `merge  (20 shards in order, JSONL + .npy): ${med(times.inOrder ?? [])} ms, ${rate(times.inOrder ?? [])} records/s`,
  );
  console.log(
    `merge  (20 shards shuffled):               ${med(times.shuffled ?? [])} ms, ${rate(times.shuffled ?? [])} records/s`,
  );
  console.log(
    `merge  (10,000 one-record shards shuffled): ${med(times.tiny ?? [])} ms, ${rate(times.tiny ?? [])} shards/s`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
