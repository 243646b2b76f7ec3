import os from "node:os";
import { throwIfAborted } from "../../util/abort.ts";
import { RuntimeError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import type { Engine, LocalModel } from "../engine.ts";

/**
 * Quick self-benchmarks a provider can announce: memory bandwidth (what bounds token generation on
 * a CPU) and tokens/s on a real model. Each is bounded to about a second. The tokens/s measurement
 * is passed in as a function, so this module depends only on the `Engine` interface and never
 * loads a runtime itself.
 */
const log = logger("runtime:hardware:bench");

export interface BenchmarkResult {
  /** Stable name, e.g. "memory.copy" or "llama.stories260k". */
  name: string;
  value: number;
  unit: string;
  /** How it was measured, for the record. */
  detail: Record<string, unknown>;
  /** Milliseconds since the epoch. */
  measuredAt: number;
}

/**
 * Per buffer; larger than the last-level cache one core can use on current CPUs (96 MB per CCD
 * even on AMD's 3D V-Cache parts), so the copy runs from and to DRAM.
 */
export const MEMORY_BENCH_BUFFER_BYTES = 128 * 1024 * 1024;
/** Never take more than this fraction of RAM for the two buffers. */
const MEMORY_BENCH_MAX_RAM_FRACTION = 1 / 16;
/** Smallest buffer worth timing: below this a copy stays in cache on most CPUs. */
const MEMORY_BENCH_MIN_BUFFER_BYTES = 16 * 1024 * 1024;
/** Copying stops once this much time, setup included, has passed (after `MEMORY_BENCH_MIN_PASSES`). */
export const MEMORY_BENCH_BUDGET_MS = 1_000;
const MEMORY_BENCH_MIN_PASSES = 3;
const MEMORY_BENCH_MAX_PASSES = 100;
const BYTES_PER_GB = 1e9;

export interface MemoryBenchOptions {
  /** Bytes per buffer (default `MEMORY_BENCH_BUFFER_BYTES`, capped at 1/16 of RAM). */
  bufferBytes?: number;
  /** Time budget in milliseconds (default `MEMORY_BENCH_BUDGET_MS`). */
  budgetMs?: number;
  signal?: AbortSignal;
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Single-threaded copy bandwidth in GB/s (10^9 bytes), counting bytes read plus bytes written as
 * STREAM's Copy does. The best pass is reported: slower passes measure interference, not memory.
 */
export async function measureMemoryBandwidth(options: MemoryBenchOptions = {}): Promise<BenchmarkResult> {
  const cap = Math.floor(os.totalmem() * MEMORY_BENCH_MAX_RAM_FRACTION);
  const requested = options.bufferBytes ?? MEMORY_BENCH_BUFFER_BYTES;
  const bytes = Math.max(Math.min(requested, cap), Math.min(requested, MEMORY_BENCH_MIN_BUFFER_BYTES));
  const budget = options.budgetMs ?? MEMORY_BENCH_BUDGET_MS;
  throwIfAborted(options.signal);
  const start = performance.now();
  const src = new Uint8Array(bytes);
  const dst = new Uint8Array(bytes);
  // Touch every page first: the first write to fresh memory measures page faults, not bandwidth.
  src.fill(1);
  dst.set(src);
  const passes: number[] = [];
  while (passes.length < MEMORY_BENCH_MAX_PASSES) {
    const t0 = performance.now();
    dst.set(src);
    passes.push(performance.now() - t0);
    if (passes.length >= MEMORY_BENCH_MIN_PASSES && performance.now() - start >= budget) break;
    await nextTick();
    throwIfAborted(options.signal);
  }
  const gbps = (ms: number) => (2 * bytes) / BYTES_PER_GB / (ms / 1000);
  const sorted = [...passes].sort((a, b) => a - b);
  const best = sorted[0] ?? Number.POSITIVE_INFINITY;
  const median = sorted[Math.floor(sorted.length / 2)] ?? best;
  return {
    name: "memory.copy",
    value: round(gbps(best), 2),
    unit: "GB/s",
    detail: {
      method: "single-thread TypedArray copy, read + write bytes",
      bufferBytes: bytes,
      passes: passes.length,
      medianGBps: round(gbps(median), 2),
    },
    measuredAt: Date.now(),
  };
}

/** One tokens/s measurement, as produced by a `TokensBenchmark`. */
export interface TokensMeasurement {
  tokensPerSecond: number;
  tokens: number;
  computeMs: number;
  detail?: Record<string, unknown>;
}

/** A named tokens/s measurement supplied by the caller (the CLI wires a real engine and model). */
export interface TokensBenchmark {
  /** Result name, e.g. "llama.stories260k". */
  name: string;
  measure(signal?: AbortSignal): Promise<TokensMeasurement>;
}

/** Tokens generated per measured run: long enough to time, short enough for ~1 s on a tiny model. */
export const TOKENS_BENCH_MAX_TOKENS = 128;
/** Measured runs after one warm-up; the fastest counts. */
export const TOKENS_BENCH_RUNS = 3;
const TOKENS_BENCH_PROMPT = "Once upon a time";

export interface EngineTokensOptions {
  prompt?: string;
  /** Tokens per run (default `TOKENS_BENCH_MAX_TOKENS`). */
  maxTokens?: number;
  /** Measured runs (default `TOKENS_BENCH_RUNS`). */
  runs?: number;
}

/**
 * Builds a tokens/s measurement from any `Engine` and model: a warm-up run, then the fastest of
 * `runs` greedy generations, as usage.outputTokens over usage.computeMs.
 */
export function engineTokensBenchmark(
  name: string,
  engine: Engine,
  model: LocalModel,
  options: EngineTokensOptions = {},
): TokensBenchmark {
  const maxTokens = options.maxTokens ?? TOKENS_BENCH_MAX_TOKENS;
  const runs = options.runs ?? TOKENS_BENCH_RUNS;
  const prompt = options.prompt ?? TOKENS_BENCH_PROMPT;
  const once = async (tokens: number, signal?: AbortSignal) => {
    for await (const event of engine.run(model, { kind: "generate", prompt, maxTokens: tokens }, { signal })) {
      if (event.type === "done") return event.usage;
    }
    throw new RuntimeError(`${model.name}: the engine ended without a done event`);
  };
  return {
    name,
    async measure(signal) {
      await engine.preload(model, { signal });
      await once(Math.min(8, maxTokens), signal);
      let best: TokensMeasurement | undefined;
      for (let i = 0; i < runs; i++) {
        const usage = await once(maxTokens, signal);
        if (usage.outputTokens <= 0 || usage.computeMs <= 0) continue;
        const tokensPerSecond = usage.outputTokens / (usage.computeMs / 1000);
        if (!best || tokensPerSecond > best.tokensPerSecond) {
          best = { tokensPerSecond, tokens: usage.outputTokens, computeMs: usage.computeMs };
        }
      }
      if (!best) throw new RuntimeError(`${model.name}: the benchmark generated no tokens`);
      best.detail = { model: model.name, sha256: model.sha256, prompt, maxTokens, runs, runtime: engine.runtime };
      return best;
    },
  };
}

export interface SelfBenchOptions {
  memory?: MemoryBenchOptions | false;
  /** Token-generation measurements to run (the caller supplies the engine). */
  tokens?: TokensBenchmark[];
  /** Called as each result is ready, so a later failure does not lose earlier measurements. */
  onResult?: (result: BenchmarkResult) => void;
  signal?: AbortSignal;
}

/** Runs the self-benchmarks in turn. The first failure (or an abort) stops the run and is thrown. */
export async function runSelfBench(options: SelfBenchOptions = {}): Promise<BenchmarkResult[]> {
  const results: BenchmarkResult[] = [];
  const add = (r: BenchmarkResult) => {
    results.push(r);
    options.onResult?.(r);
  };
  if (options.memory !== false) {
    add(await measureMemoryBandwidth({ ...options.memory, ...(options.signal ? { signal: options.signal } : {}) }));
  }
  for (const bench of options.tokens ?? []) {
    throwIfAborted(options.signal);
    try {
      const m = await bench.measure(options.signal);
      add({
        name: bench.name,
        value: round(m.tokensPerSecond, 1),
        unit: "tokens/s",
        detail: { ...m.detail, tokens: m.tokens, computeMs: round(m.computeMs, 2) },
        measuredAt: Date.now(),
      });
    } catch (err) {
      throwIfAborted(options.signal);
      log.warn("benchmark failed", { name: bench.name, err });
      throw err;
    }
  }
  return results;
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
