import { resolveLocalModel } from "../models/local.ts";
import { detectHardware, type GpuInfo, type HardwareInfo, machineFingerprint } from "../runtime/hardware/index.ts";
import {
  type BenchmarkResult,
  engineTokensBenchmark,
  runSelfBench,
  type TokensBenchmark,
} from "../runtime/hardware/self-bench.ts";
import { sqliteBenchmarkStore } from "../store/benchmarks.ts";
import type { CliContext } from "./command.ts";
import { defineCommand } from "./command.ts";
import { llamaEngineFor } from "./llama.ts";
import { progressReporter } from "./progress.ts";

/** The model whose tokens/s every provider reports, so figures compare across machines. */
export const BENCH_MODEL = "stories260k";
const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const LABEL_WIDTH = 13;

export const gpuCommand = defineCommand({
  name: "gpu",
  usage: ["gpu [--json] [--bench]"],
  details: [
    "GPUs are found with nvidia-smi; without one, inference runs on the CPU.",
    `--bench measures memory bandwidth and llama tokens/s on ${BENCH_MODEL} (a few seconds; the model`,
    "is fetched on first use) and stores the results, which providers announce to the network.",
    "",
    "Examples:",
    "  infernet gpu",
    "  infernet gpu --bench",
    "  infernet gpu --json",
  ].join("\n"),
  options: {
    json: { type: "boolean", description: "Print everything as JSON" },
    bench: { type: "boolean", description: "Run the self-benchmark now and store the results" },
  },
  async run(ctx, { values }) {
    const hardware = await detectHardware({ signal: ctx.signal });
    const machine = machineFingerprint(hardware);
    const benchmarks = sqliteBenchmarkStore(ctx.store().db);
    if (values.bench) await selfBench(ctx, (r) => benchmarks.put(machine, r));
    const stored = benchmarks.list(machine);
    if (values.json) {
      ctx.stdout.write(`${JSON.stringify({ machine, ...hardware, benchmarks: stored }, null, 2)}\n`);
    } else {
      ctx.stdout.write(formatSummary(hardware, machine, stored));
    }
    return 0;
  },
});

async function selfBench(ctx: CliContext, save: (r: BenchmarkResult) => void): Promise<void> {
  const config = ctx.config();
  const model = await resolveLocalModel(BENCH_MODEL, {
    config,
    store: ctx.store(),
    signal: ctx.signal,
    onProgress: progressReporter(ctx.stderr, BENCH_MODEL),
  });
  const engine = await llamaEngineFor(ctx);
  try {
    const inner = engineTokensBenchmark(`llama.${BENCH_MODEL}`, engine, model);
    const tokens: TokensBenchmark = {
      name: inner.name,
      async measure(signal) {
        ctx.stderr.write(`Measuring llama tokens/s on ${BENCH_MODEL}...\n`);
        const m = await inner.measure(signal);
        m.detail = { ...m.detail, backend: await engine.backend(), threads: await engine.threadsFor(model, signal) };
        return m;
      },
    };
    ctx.stderr.write("Measuring memory bandwidth...\n");
    await runSelfBench({ tokens: [tokens], onResult: save, signal: ctx.signal });
  } finally {
    await engine.dispose();
  }
}

const group = (n: number) => Math.round(n).toLocaleString("en-US");

function bytes(n: number): string {
  return n >= GIB ? `${(n / GIB).toFixed(1)} GiB` : `${group(n / MIB)} MiB`;
}

function row(label: string, text: string, width = LABEL_WIDTH): string {
  return `  ${label.padEnd(width)}${text}\n`;
}

function formatGpu(gpu: GpuInfo, cudaVersion: string | undefined): string {
  const arch = gpu.architecture ? ` (${gpu.architecture})` : "";
  let out = `GPU ${gpu.index}: ${gpu.name}${arch}\n`;
  if (gpu.memoryTotalBytes !== undefined) {
    const used = gpu.memoryUsedBytes !== undefined ? `${bytes(gpu.memoryUsedBytes)} used of ` : "";
    const free = gpu.memoryFreeBytes !== undefined ? ` (${bytes(gpu.memoryFreeBytes)} free)` : "";
    out += row("VRAM", `${used}${bytes(gpu.memoryTotalBytes)}${free}`);
  }
  const cc = gpu.computeCapability ? `compute capability ${gpu.computeCapability}` : "compute capability unknown";
  if (gpu.cudaCores !== undefined && gpu.smCount !== undefined) {
    const source = gpu.smCountSource === "cuda" ? "from the CUDA driver" : "from published specs";
    out += row("CUDA cores", `${group(gpu.cudaCores)} (${gpu.smCount} SMs ${source}; ${cc})`);
  } else if (gpu.smCount !== undefined) {
    out += row("SMs", `${gpu.smCount} (${cc})`);
  } else {
    out += row("CUDA cores", `unknown (${cc})`);
  }
  if (gpu.driverVersion) out += row("Driver", `${gpu.driverVersion}${cudaVersion ? `, CUDA ${cudaVersion}` : ""}`);
  const now: string[] = [];
  if (gpu.utilizationPercent !== undefined) now.push(`${gpu.utilizationPercent}% busy`);
  if (gpu.temperatureC !== undefined) now.push(`${gpu.temperatureC} C`);
  if (gpu.powerDrawW !== undefined) {
    now.push(
      `${Math.round(gpu.powerDrawW)} W${gpu.powerLimitW !== undefined ? ` of ${Math.round(gpu.powerLimitW)} W` : ""}`,
    );
  }
  if (gpu.smClockMhz !== undefined) {
    now.push(`SM ${gpu.smClockMhz}${gpu.smClockMaxMhz !== undefined ? `/${gpu.smClockMaxMhz}` : ""} MHz`);
  }
  if (gpu.pcieGen !== undefined)
    now.push(`PCIe gen ${gpu.pcieGen}${gpu.pcieWidth !== undefined ? ` x${gpu.pcieWidth}` : ""}`);
  if (now.length) out += row("Now", now.join(", "));
  return out;
}

function formatBenchmark(r: BenchmarkResult, width: number): string {
  const value = r.value >= 100 ? group(r.value) : String(r.value);
  const when = new Date(r.measuredAt).toISOString().replace("T", " ").slice(0, 16);
  return row(r.name, `${`${value} ${r.unit}`.padEnd(18)}measured ${when} UTC`, width);
}

/** The human-readable `infernet gpu` report. */
export function formatSummary(hw: HardwareInfo, machine: string, benchmarks: BenchmarkResult[]): string {
  const parts: string[] = [];
  if (hw.nvidia.gpus.length === 0) {
    parts.push(`No NVIDIA GPU found (${hw.nvidia.reason ?? "none listed"}): inference runs on the CPU\n`);
  } else {
    parts.push(hw.nvidia.gpus.map((g) => formatGpu(g, hw.nvidia.cudaVersion)).join("\n"));
  }
  const { cpu, memory, os } = hw;
  const flags = cpu.flags.length ? `; ${cpu.flags.join(" ")}` : "";
  parts.push(
    `Machine ${machine}\n` +
      row("CPU", `${cpu.model}, ${cpu.physicalCores} cores / ${cpu.logicalCores} threads${flags}`) +
      row("RAM", `${bytes(memory.totalBytes)} total, ${bytes(memory.availableBytes)} available`) +
      row("OS", `${os.name ? `${os.name}, ` : ""}${os.platform} ${os.release} ${os.arch}`),
  );
  const width = Math.max(LABEL_WIDTH, ...benchmarks.map((b) => b.name.length + 2));
  parts.push(
    benchmarks.length
      ? `Benchmarks\n${benchmarks.map((b) => formatBenchmark(b, width)).join("")}`
      : "Benchmarks: none yet (run `infernet gpu --bench`, a few seconds)\n",
  );
  return parts.join("\n");
}
