import { createHash } from "node:crypto";
import { type CpuInfo, detectCpu, detectMemory, detectOs, type MemoryInfo, type OsInfo } from "./cpu.ts";
import { type DetectNvidiaOptions, detectNvidia, type NvidiaDetection } from "./nvidia.ts";

/**
 * What this machine can offer for inference: NVIDIA GPUs (through nvidia-smi and the CUDA driver),
 * CPU, memory and OS, and a stable fingerprint that keys per-machine measurements.
 */
export type { CpuInfo, MemoryInfo, OsInfo } from "./cpu.ts";
export { detectCpu, detectMemory, detectOs } from "./cpu.ts";
export { fp32CoresPerSm, knownSmCount } from "./gpu-specs.ts";
export { type DetectNvidiaOptions, detectNvidia, type NvidiaDetection } from "./nvidia.ts";
export type { GpuInfo, SmCountSource } from "./nvidia-smi.ts";

export interface HardwareInfo {
  nvidia: NvidiaDetection;
  cpu: CpuInfo;
  memory: MemoryInfo;
  os: OsInfo;
}

/** Detects everything; never throws for missing hardware (only if `signal` is aborted). */
export async function detectHardware(options: DetectNvidiaOptions = {}): Promise<HardwareInfo> {
  const nvidia = await detectNvidia(options);
  return { nvidia, cpu: detectCpu(), memory: detectMemory(), os: detectOs() };
}

/** Hex characters kept from the sha256: plenty to tell machines apart, short enough to read. */
const FINGERPRINT_HEX_CHARS = 32;
const GIB = 1024 ** 3;

/**
 * A stable id for this machine's hardware: the same on every run until the CPU, core count, RAM
 * (to the GiB, since the kernel's figure moves by a few MB between boots) or set of GPUs changes.
 * It keys thread calibrations and benchmark results, so a swapped GPU means a re-measure.
 */
export function machineFingerprint(hw: Pick<HardwareInfo, "cpu" | "memory" | "os" | "nvidia">): string {
  const facts = {
    cpu: hw.cpu.model,
    physicalCores: hw.cpu.physicalCores,
    logicalCores: hw.cpu.logicalCores,
    ramGiB: Math.round(hw.memory.totalBytes / GIB),
    arch: hw.os.arch,
    gpus: hw.nvidia.gpus.map((g) => g.uuid ?? `${g.name}#${g.index}`).sort(),
  };
  return createHash("sha256").update(JSON.stringify(facts)).digest("hex").slice(0, FINGERPRINT_HEX_CHARS);
}

let cached: Promise<string> | undefined;

/**
 * This machine's fingerprint, detected once per process (nvidia-smi takes a few hundred ms on
 * a GPU machine). The CUDA driver is not asked: the fingerprint needs only GPU ids.
 */
export function currentMachineFingerprint(signal?: AbortSignal): Promise<string> {
  cached ??= detectHardware({ xml: false, cudaLibrary: false, ...(signal ? { signal } : {}) })
    .then(machineFingerprint)
    .catch((err: unknown) => {
      cached = undefined;
      throw err;
    });
  return cached;
}
