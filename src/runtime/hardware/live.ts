import os from "node:os";
import { errorMessage } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import { detectMemory } from "./cpu.ts";
import { parseQueryCsv } from "./nvidia-smi.ts";
import { runCapped } from "./spawn.ts";

/**
 * Live hardware figures for the dashboard: GPU utilisation, temperature and memory (nvidia-smi, when
 * there is one), CPU use (deltas of the kernel's per-core times between two samples) and memory.
 * Cheap enough to ask every second: nvidia-smi runs at most every `GPU_SAMPLE_INTERVAL_MS`, and a
 * caller never waits for it once a first answer exists (the last one is served while a new one runs).
 */
const log = logger("runtime:hardware:live");

/** nvidia-smi is asked at most this often (one run costs tens of ms of a CPU and wakes the driver). */
export const GPU_SAMPLE_INTERVAL_MS = 3_000;
/** A live query must answer this soon: a wedged driver must not hold the dashboard up. */
export const GPU_SAMPLE_TIMEOUT_MS = 2_000;
/** The query's answer is a few lines per GPU; more than this is not nvidia-smi. */
export const MAX_GPU_SAMPLE_BYTES = 64 * 1024;
/** Fields of the live query, in this order (`--format=csv,noheader,nounits`). */
export const LIVE_GPU_FIELDS = [
  "index",
  "name",
  "memory.used",
  "memory.total",
  "utilization.gpu",
  "temperature.gpu",
] as const;

export interface LiveGpu {
  index: number;
  name: string;
  memoryUsedBytes: number | undefined;
  memoryTotalBytes: number | undefined;
  utilizationPercent: number | undefined;
  temperatureC: number | undefined;
}

export interface LiveHardware {
  gpus: LiveGpu[];
  /** Percent of all cores busy since the previous sample; undefined on the first. */
  cpuUsedPercent: number | undefined;
  memory: { usedBytes: number; totalBytes: number };
}

/** Parses the live query's output (noheader, nounits, `LIVE_GPU_FIELDS`); throws `InvalidInputError` otherwise. */
export function parseLiveGpus(csv: string): LiveGpu[] {
  return parseQueryCsv(csv, LIVE_GPU_FIELDS).map((g) => ({
    index: g.index,
    name: g.name,
    memoryUsedBytes: g.memoryUsedBytes,
    memoryTotalBytes: g.memoryTotalBytes,
    utilizationPercent: g.utilizationPercent,
    temperatureC: g.temperatureC,
  }));
}

interface CpuTimes {
  busy: number;
  total: number;
}

function cpuTimes(): CpuTimes {
  let busy = 0;
  let total = 0;
  for (const { times } of os.cpus()) {
    const all = times.user + times.nice + times.sys + times.irq + times.idle;
    busy += all - times.idle;
    total += all;
  }
  return { busy, total };
}

export interface LiveSamplerOptions {
  /** The nvidia-smi executable: a name on PATH or a path (default "nvidia-smi"); absent = no GPU figures. */
  command?: string;
  now?: () => number;
}

export class LiveSampler {
  private readonly executable: string | undefined;
  private readonly now: () => number;
  private gpus: LiveGpu[] = [];
  private gpuAt = Number.NEGATIVE_INFINITY;
  private gpuRun: Promise<void> | undefined;
  private lastCpu: CpuTimes | undefined;

  constructor(options: LiveSamplerOptions = {}) {
    const command = options.command ?? "nvidia-smi";
    this.executable = command.includes("/") ? command : (Bun.which(command) ?? undefined);
    this.now = options.now ?? Date.now;
  }

  /** Whether GPU figures can come at all (nvidia-smi was found). */
  get hasGpuTool(): boolean {
    return this.executable !== undefined;
  }

  /**
   * The current figures. The first call waits for nvidia-smi (bounded by `GPU_SAMPLE_TIMEOUT_MS`);
   * later calls return at once with the last GPU answer and refresh it in the background when stale.
   */
  async sample(signal?: AbortSignal): Promise<LiveHardware> {
    signal?.throwIfAborted();
    if (this.executable && this.now() - this.gpuAt >= GPU_SAMPLE_INTERVAL_MS) {
      const first = this.gpuAt === Number.NEGATIVE_INFINITY;
      // No signal for the run itself: a background refresh outlives the request that started it.
      this.gpuRun ??= this.queryGpus(this.executable).finally(() => {
        this.gpuRun = undefined;
      });
      if (first) await this.gpuRun;
    }
    const times = cpuTimes();
    const previous = this.lastCpu;
    this.lastCpu = times;
    const spent = previous ? times.total - previous.total : 0;
    const cpuUsedPercent =
      previous && spent > 0 ? clampPercent(((times.busy - previous.busy) / spent) * 100) : undefined;
    const memory = detectMemory();
    return {
      gpus: this.gpus,
      cpuUsedPercent,
      memory: { usedBytes: Math.max(0, memory.totalBytes - memory.availableBytes), totalBytes: memory.totalBytes },
    };
  }

  /** Resolves once a GPU query in progress (a background refresh) is over. */
  async settled(): Promise<void> {
    await this.gpuRun;
  }

  private async queryGpus(executable: string): Promise<void> {
    this.gpuAt = this.now();
    try {
      const result = await runCapped(
        [executable, `--query-gpu=${LIVE_GPU_FIELDS.join(",")}`, "--format=csv,noheader,nounits"],
        { timeoutMs: GPU_SAMPLE_TIMEOUT_MS, maxBytes: MAX_GPU_SAMPLE_BYTES },
      );
      // A failed or hung run keeps nothing stale on screen: no figures rather than old ones.
      this.gpus = result.exitCode === 0 && !result.truncated ? parseLiveGpus(result.stdout) : [];
    } catch (err) {
      this.gpus = [];
      log.debug("live nvidia-smi query failed", { err: errorMessage(err) });
    }
  }
}

function clampPercent(n: number): number {
  return Math.min(100, Math.max(0, n));
}
