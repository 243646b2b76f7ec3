import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { classify, loadClassNames, softmax, topK } from "./classify.ts";
import { toHalfArray } from "./float16.ts";
import { visionSpec } from "./test-models.ts";

const SHARED = join(import.meta.dir, "../../../../shared");
const SQUEEZENET_SPEC = visionSpec("squeezenet1.1");
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "infernet-classify-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("scores", () => {
  test("softmax is stable for large logits and sums to 1", () => {
    const row = Float32Array.from([6080.92, -41.38, 355.69, 6079.92]);
    softmax(row);
    expect(row[0]).toBeCloseTo(1 / (1 + Math.exp(-1)), 6);
    expect(row[3]).toBeCloseTo(Math.exp(-1) / (1 + Math.exp(-1)), 6);
    expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
  });

  test("top k is ordered best first, ties by lower index", () => {
    expect(topK([0.1, 0.5, 0.2, 0.5, 0.05], 3)).toEqual([1, 3, 2]);
    expect(topK([3, 1, 2], 5)).toEqual([0, 2, 1]);
  });

  test("classify: logits through softmax, probabilities (float16) as they are", () => {
    const logits = { type: "float32" as const, dims: [2, 3], data: Float32Array.from([0, 0, 5, 9, 0, 0]) };
    const [a, b] = classify(logits, "logits", ["x", "y", "z"], 2);
    expect(a?.class).toBe(2);
    expect(a?.label).toBe("z");
    expect(a?.top.map((t) => t.label)).toEqual(["z", "x"]);
    expect(b?.label).toBe("x");
    expect(b?.score).toBeCloseTo(Math.exp(9) / (Math.exp(9) + 2), 5);
    const probs = { type: "float16" as const, dims: [1, 3, 1, 1], data: toHalfArray([0.25, 0.5, 0.25]) };
    const [p] = classify(probs, "probabilities", undefined, 1);
    expect(p).toEqual({ class: 1, label: "1", score: 0.5, top: [{ class: 1, label: "1", score: 0.5 }] });
  });
});

describe("class names", () => {
  test("inline names, an index->name object file, an array file", async () => {
    expect(await loadClassNames(visionSpec("mnist-8"), {})).toEqual(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    const names = await loadClassNames(SQUEEZENET_SPEC, {
      extras: { labels: join(SHARED, "models/squeezenet1.1-labels.json") },
    });
    expect(names).toHaveLength(1000);
    expect(names?.[0]).toBe("tench, Tinca tinca");
    const arrayFile = join(dir, "array.json");
    await writeFile(arrayFile, JSON.stringify(["cat", "dog"]));
    expect(await loadClassNames(SQUEEZENET_SPEC, { extras: { labels: arrayFile } })).toEqual(["cat", "dog"]);
  });

  test("without the labels file the classes are numbered; a malformed one is an IntegrityError", async () => {
    expect(await loadClassNames(SQUEEZENET_SPEC, {})).toBeUndefined();
    const bad = join(dir, "bad.json");
    await writeFile(bad, '{"zero": 1}');
    const err = (await loadClassNames(SQUEEZENET_SPEC, { extras: { labels: bad } }).catch((e: unknown) => e)) as Error;
    expect(err.name).toBe("IntegrityError");
  });
});
