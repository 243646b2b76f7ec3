import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LocalModel, Tensor } from "../runtime/engine.ts";
import { createOnnxEngine } from "../runtime/onnx/engine.ts";
import { readExpected } from "../runtime/onnx/inputs/expected.ts";
import { openNpy } from "../runtime/onnx/inputs/npy.ts";
import { preprocess } from "../runtime/onnx/inputs/preprocess.ts";
import { visionSpec } from "../runtime/onnx/test-models.ts";
import { createMerger, type MergerOptions } from "./merge.ts";
import { planShards, type ShardResult } from "./records.ts";
import { splitImages, splitPrompts } from "./split.ts";

const SHARED = join(import.meta.dir, "../../../shared");
const MNIST_IMAGES = join(SHARED, "data/mnist/t10k-images-idx3-ubyte.gz");
const MNIST_LABELS = join(SHARED, "data/mnist/t10k-labels-idx1-ubyte.gz");
const MNIST: LocalModel = { name: "mnist-8", runtime: "onnx", path: join(SHARED, "models/mnist-8.onnx") };
const SPEC = visionSpec("mnist-8");

let dir: string;
/** Per-shard logits of the 10,000 MNIST test images, computed once by the real engine. */
let mnistResults: TensorResult[];

type TensorResult = Extract<ShardResult, { kind: "tensor" }>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "infernet-merge-"));
  await using engine = createOnnxEngine();
  await using splitter = await splitImages(MNIST_IMAGES, { shardSize: 500 });
  mnistResults = [];
  for await (const shard of splitter.shards()) {
    if (shard.payload.kind !== "images") throw new Error("expected images");
    const input = preprocess(shard.payload.images, SPEC, SPEC.inputType);
    let output: Tensor | undefined;
    for await (const event of engine.run(MNIST, { kind: "tensor", inputs: { [SPEC.input]: input } })) {
      if (event.type === "tensors") output = event.outputs[SPEC.output];
    }
    if (!output) throw new Error("no output");
    mnistResults.push({ kind: "tensor", shard: shard.index, providers: [`peer-${shard.index % 3}`], output });
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

async function lines(path: string): Promise<Record<string, unknown>[]> {
  return (await readFile(path, "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A deterministic shuffle (a linear congruential generator), so a failure reproduces. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

function mnistOptions(name: string, extra: Partial<MergerOptions> = {}): MergerOptions {
  return {
    plan: planShards(10_000, { shardSize: 500 }),
    kind: "classification",
    outputPath: join(dir, `${name}.jsonl`),
    outputKind: SPEC.outputKind,
    classNames: SPEC.labels,
    recordShape: [10],
    ...extra,
  };
}

describe("merging MNIST classifications from the real mnist-8 engine", () => {
  for (const [order, arrange] of [
    ["in order", (r: ShardResult[]) => r],
    ["in reverse", (r: ShardResult[]) => [...r].reverse()],
    ["shuffled", (r: ShardResult[]) => shuffled(r, 7)],
  ] as const) {
    test(`${order}: exactly 9,890 of 10,000 correct, every index in place, with provenance`, async () => {
      const tensorPath = join(dir, `mnist-${order}.npy`);
      await using merger = await createMerger(mnistOptions(`mnist-${order}`, { tensorPath, topK: 3 }));
      let held = 0;
      for (const result of arrange(mnistResults)) {
        await merger.add(result);
        held = Math.max(held, merger.pending);
      }
      expect(merger.written).toBe(10_000);
      expect(merger.pending).toBe(0);
      // Only results that arrive ahead of a missing shard wait in memory.
      if (order !== "shuffled") expect(held).toBe(order === "in order" ? 0 : 19);
      const summary = await merger.finish();
      expect(summary.provenance[4]).toEqual(["peer-1"]);

      const expected = await readExpected(MNIST_LABELS, undefined);
      const records = await lines(summary.outputPath);
      expect(records).toHaveLength(10_000);
      let correct = 0;
      records.forEach((r, i) => {
        expect(r.index).toBe(i);
        if (r.class === expected[i]) correct++;
      });
      expect(correct).toBe(9_890);
      expect(records[0]).toMatchObject({ index: 0, label: String(records[0]?.class), providers: ["peer-0"] });
      expect(records[0]?.top).toHaveLength(3);

      await using npy = await openNpy(tensorPath);
      expect([npy.type, ...npy.dims]).toEqual(["float32", 10_000, 10]);
      const row = await npy.read(9_999, 1);
      const last = (mnistResults[19] as TensorResult).output;
      expect(Array.from(row.data as Float32Array)).toEqual(Array.from(last.data.subarray(4_990) as Float32Array));
    });
  }
});

describe("gaps, duplicates and wrong shapes", () => {
  test("missing shards are a MissingShardsError listing them; the merger completes once they arrive", async () => {
    await using merger = await createMerger(mnistOptions("gaps"));
    const held = new Set([3, 7, 8, 9, 19]);
    for (const r of mnistResults) if (!held.has(r.shard)) await merger.add(r);
    expect(merger.written).toBe(1_500);
    expect(merger.missing()).toEqual([3, 7, 8, 9, 19]);
    const err = await rejection(merger.finish());
    expect(err.name).toBe("MissingShardsError");
    expect(err.message).toBe("5 shard(s) have no result: 3, 7-9, 19");
    expect((err as unknown as { missing: number[] }).missing).toEqual([3, 7, 8, 9, 19]);
    await expect(stat(join(dir, "gaps.jsonl"))).rejects.toThrow();
    for (const shard of held) await merger.add(mnistResults[shard] as ShardResult);
    const summary = await merger.finish();
    expect((await lines(summary.outputPath)).length).toBe(10_000);
  });

  test("the same shard twice counts once when equal (providers join) and is a ConflictingResultError when not", async () => {
    await using merger = await createMerger(mnistOptions("dupes"));
    const first = mnistResults[1] as TensorResult;
    expect(await merger.add(first)).toBe("pending");
    expect(await merger.add({ ...first, providers: ["peer-9"] })).toBe("duplicate");
    expect(await merger.add(mnistResults[0] as ShardResult)).toBe("merged");
    expect(merger.written).toBe(1_000);
    expect(await merger.add({ ...first, providers: ["peer-1"] })).toBe("duplicate");
    const data = Float32Array.from(first.output.data as Float32Array);
    data[5] = (data[5] as number) + 1;
    const different = { ...first, providers: ["peer-bad"], output: { ...first.output, data } };
    const err = await rejection(merger.add(different));
    expect(err.name).toBe("ConflictingResultError");
    expect(err.message).toContain("shard 1 came back twice with different results");
    for (const r of mnistResults.slice(2)) await merger.add(r);
    const summary = await merger.finish();
    expect(summary.provenance[1]).toEqual(["peer-1", "peer-9"]);
    const records = await lines(summary.outputPath);
    expect(records[500]?.providers).toEqual(["peer-1", "peer-9"]);
  });

  test("wrong record counts, shapes, types, kinds and shard numbers are ResultShapeErrors", async () => {
    await using merger = await createMerger(mnistOptions("shapes"));
    const good = mnistResults[0] as TensorResult;
    const tensor = (dims: number[], type: Tensor["type"] = "float32"): Tensor => ({
      type,
      dims,
      data: type === "float32" ? new Float32Array(dims.reduce((a, b) => a * b, 1)) : new Int32Array(dims[0] ?? 0),
    });
    const bad: [ShardResult, RegExp][] = [
      [{ ...good, output: tensor([499, 10]) }, /shape \[499, 10\] for 500 records/],
      [{ ...good, output: tensor([500, 11]) }, /records of shape \[11\], expected \[10\]/],
      [{ ...good, output: tensor([500], "int32") }, /int32 output cannot be classified/],
      [{ ...good, output: { ...good.output, data: new Float32Array(10) } }, /10 values for shape/],
      [{ ...good, shard: 20 }, /shards 0 to 19/],
      [{ ...good, providers: [] }, /provider ids/],
      [{ kind: "text", shard: 0, providers: ["p"], outputs: [] }, /text result for a tensor job/],
    ];
    for (const [result, message] of bad) {
      const err = await rejection(merger.add(result));
      expect(err.name).toBe("ResultShapeError");
      expect(err.message).toMatch(message);
    }
    expect(await merger.add(good)).toBe("merged");
  });

  test("closing an unfinished merger removes its partial output", async () => {
    const merger = await createMerger(mnistOptions("closed"));
    await merger.add(mnistResults[0] as ShardResult);
    await merger.close();
    await expect(stat(join(dir, "closed.jsonl.partial"))).rejects.toThrow();
    await expect(stat(join(dir, "closed.jsonl"))).rejects.toThrow();
  });
});

describe("text jobs", () => {
  test("64 prompts split, computed out of order by several providers, merge back in input order", async () => {
    const prompts = Array.from({ length: 64 }, (_, i) => `Once upon a time, child ${i}`);
    const path = join(dir, "prompts.jsonl");
    await writeFile(path, `${prompts.map((prompt) => JSON.stringify({ prompt, maxTokens: 8 })).join("\n")}\n`);
    await using splitter = await splitPrompts(path, { shardSize: 5 });
    const results: ShardResult[] = [];
    for await (const shard of splitter.shards()) {
      if (shard.payload.kind !== "prompts") throw new Error("expected prompts");
      const outputs = shard.payload.prompts.map((p) => `${p.prompt} ... the end.`);
      results.push({ kind: "text", shard: shard.index, providers: [`peer-${shard.index % 3}`], outputs });
    }
    expect(results).toHaveLength(13);
    await using merger = await createMerger({
      plan: splitter.plan,
      kind: "text",
      outputPath: join(dir, "text.jsonl"),
    });
    for (const r of shuffled(results, 3)) await merger.add(r);
    const err = await rejection(merger.add({ kind: "text", shard: 2, providers: ["x"], outputs: ["a"] }));
    expect(err.name).toBe("ResultShapeError");
    const summary = await merger.finish();
    const records = await lines(summary.outputPath);
    expect(records).toEqual(
      prompts.map((prompt, index) => ({
        index,
        output: `${prompt} ... the end.`,
        providers: [`peer-${Math.floor(index / 5) % 3}`],
      })),
    );
  });
});
