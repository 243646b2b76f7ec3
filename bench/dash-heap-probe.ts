import { heapStats } from "bun:jsc";
import { appendFileSync } from "node:fs";
import { resolve } from "node:path";

/**
 * Loaded into the `infernet dash` process with `bun --preload` by bench/dashboard.ts --soak (never
 * by the product): every INFERNET_BENCH_HEAP_MS it forces a full garbage collection and appends the
 * live JavaScript heap to INFERNET_BENCH_HEAP_FILE as one JSON line, so a leak shows as a rising
 * line rather than as the sawtooth of heap between collections. RSS is read from outside (/proc).
 */

/**
 * Ink's LRU of wrapped text (4,096 entries, up to twice that while it rotates). Ink's package exports
 * do not name the file, so it is loaded by path: the same file, so the same module instance the
 * dashboard's Ink uses, and its size shows how much of the heap's growth is that bounded cache.
 */
const { wrapTextCache } = (await import(resolve(import.meta.dir, "../node_modules/ink/build/wrap-text.js"))) as {
  wrapTextCache: { size: number };
};

/** Sampling interval when none is given: the soak's 30 s. */
const DEFAULT_INTERVAL_MS = 30_000;

const file = process.env.INFERNET_BENCH_HEAP_FILE;
const intervalMs = Number(process.env.INFERNET_BENCH_HEAP_MS ?? DEFAULT_INTERVAL_MS);

export interface HeapSample {
  /** Wall clock (ms since the epoch), to pair with the bench's RSS samples. */
  at: number;
  heapUsedBytes: number;
  heapSizeBytes: number;
  objectCount: number;
  /** Entries in Ink's wrapped-text cache. */
  inkWrapCache: number;
  /** Live objects by type (JavaScriptCore's names), to see what a growing heap is made of. */
  types: Record<string, number>;
}

function sample(path: string): void {
  Bun.gc(true);
  const stats = heapStats();
  const line: HeapSample = {
    at: Date.now(),
    heapUsedBytes: process.memoryUsage().heapUsed,
    heapSizeBytes: stats.heapSize,
    objectCount: stats.objectCount,
    inkWrapCache: wrapTextCache.size,
    types: stats.objectTypeCounts,
  };
  appendFileSync(path, `${JSON.stringify(line)}\n`);
}

if (file) {
  const path = file;
  sample(path);
  // unref: the probe never keeps the dashboard alive after the user quits.
  setInterval(() => sample(path), intervalMs).unref();
}
