import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sqliteBenchmarkStore } from "../../store/benchmarks.ts";
import { Store } from "../../store/db.ts";
import type { LocalModel } from "../engine.ts";
import { createLlamaEngine, type LlamaEngine } from "../llama/engine.ts";
import { engineTokensBenchmark, measureMemoryBandwidth, runSelfBench } from "./self-bench.ts";

const STORIES: LocalModel = {
  name: "stories260k",
  runtime: "llama",
  path: join(import.meta.dir, "../../../../shared/models/stories260K.gguf"),
  sha256: "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d",
};

let dir: string;
let engine: LlamaEngine;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "infernet-bench-"));
  // One thread: calibration is the engine's business, and one thread is fastest for this model.
  engine = createLlamaEngine({ gpu: "cpu", threads: 1 });
});

afterAll(async () => {
  await engine.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe("memory bandwidth", () => {
  test("a real figure within the time budget", async () => {
    const t0 = performance.now();
    const r = await measureMemoryBandwidth();
    const elapsed = performance.now() - t0;
    expect(r.name).toBe("memory.copy");
    expect(r.unit).toBe("GB/s");
    // Any machine that runs Infernet copies faster than 0.5 GB/s and slower than 2 TB/s from one thread.
    expect(r.value).toBeGreaterThan(0.5);
    expect(r.value).toBeLessThan(2_000);
    expect(r.detail.passes).toBeGreaterThanOrEqual(3);
    expect(r.detail.medianGBps as number).toBeLessThanOrEqual(r.value);
    // Budget 1 s including setup; slack for a loaded CI machine.
    expect(elapsed).toBeLessThan(3_000);
  });

  test("an aborted signal stops it with AbortedError", async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await measureMemoryBandwidth({ signal: controller.signal }).catch((e: unknown) => e);
    expect((err as Error).name).toBe("AbortedError");
  });
});

describe("tokens/s on the real stories260k through the llama engine", () => {
  test("measures generated tokens over compute time", async () => {
    const bench = engineTokensBenchmark("llama.stories260k", engine, STORIES, { maxTokens: 64, runs: 2 });
    const m = await bench.measure();
    expect(m.tokens).toBeGreaterThan(0);
    expect(m.tokens).toBeLessThanOrEqual(64);
    expect(m.computeMs).toBeGreaterThan(0);
    expect(m.tokensPerSecond).toBeCloseTo(m.tokens / (m.computeMs / 1000), 6);
    // The shared README measured 2,000-3,500 tokens/s on one thread of a 2-core machine.
    expect(m.tokensPerSecond).toBeGreaterThan(100);
    expect(m.detail).toMatchObject({ model: "stories260k", runtime: "llama", sha256: STORIES.sha256 });
  });

  test("self-bench runs both, reports each as it completes, and the store keeps the latest per machine", async () => {
    const seen: string[] = [];
    const results = await runSelfBench({
      memory: { budgetMs: 200 },
      tokens: [engineTokensBenchmark("llama.stories260k", engine, STORIES, { maxTokens: 32, runs: 1 })],
      onResult: (r) => seen.push(r.name),
    });
    expect(results.map((r) => [r.name, r.unit])).toEqual([
      ["memory.copy", "GB/s"],
      ["llama.stories260k", "tokens/s"],
    ]);
    expect(seen).toEqual(["memory.copy", "llama.stories260k"]);

    using store = Store.open(dir);
    const benchmarks = sqliteBenchmarkStore(store.db);
    for (const r of results) benchmarks.put("machine-a", r);
    expect(benchmarks.list("machine-a")).toEqual(
      [...results].sort((a, b) => a.name.localeCompare(b.name)).map((r) => ({ ...r, detail: { ...r.detail } })),
    );
    expect(benchmarks.list("machine-b")).toEqual([]);
    const again = { ...results[0]!, value: 1.5, measuredAt: results[0]!.measuredAt + 1 };
    benchmarks.put("machine-a", again);
    expect(benchmarks.list("machine-a").find((r) => r.name === "memory.copy")).toEqual(again);
    expect(benchmarks.list("machine-a")).toHaveLength(2);
  });

  test("a missing model file fails the run with the engine's typed error", async () => {
    const missing = { ...STORIES, path: join(dir, "nope.gguf"), sha256: "0".repeat(64) };
    const err = await runSelfBench({
      memory: false,
      tokens: [engineTokensBenchmark("llama.nope", engine, missing, { maxTokens: 4, runs: 1 })],
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(["IntegrityError", "FileNotFoundError", "RuntimeError"]).toContain((err as Error).name);
  });
});
