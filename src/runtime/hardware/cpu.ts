import { readFileSync } from "node:fs";
import os from "node:os";

/** CPU, memory and operating system facts. Reading them cannot fail: unknowns are left out. */

export interface CpuInfo {
  model: string;
  /** Physical cores (equal to logical where the OS does not say). */
  physicalCores: number;
  /** Hardware threads the OS schedules on. */
  logicalCores: number;
  /** Instruction-set extensions that matter for inference speed, e.g. avx2, avx512f, asimd. */
  flags: string[];
}

export interface MemoryInfo {
  totalBytes: number;
  /** Memory available to start new work (Linux MemAvailable; elsewhere the OS's free figure). */
  availableBytes: number;
}

export interface OsInfo {
  platform: NodeJS.Platform;
  arch: string;
  release: string;
  /** e.g. "Ubuntu 24.04.1 LTS" from /etc/os-release. */
  name?: string;
}

/** Extensions llama.cpp and onnxruntime pick kernels by; the full flag list is long and noisy. */
export const INFERENCE_CPU_FLAGS = [
  "sse4_2",
  "avx",
  "avx2",
  "fma",
  "f16c",
  "avx512f",
  "avx512bw",
  "avx512vl",
  "avx512_vnni",
  "avx512_bf16",
  "avx512_fp16",
  "avx_vnni",
  "amx_tile",
  "amx_int8",
  "amx_bf16",
  "asimd",
  "asimddp",
  "asimdhp",
  "sve",
  "sve2",
  "i8mm",
  "bf16",
] as const;

/** Largest /proc file we read (cpuinfo on a 256-thread server is ~400 KB). */
const MAX_PROC_FILE_BYTES = 4 * 1024 * 1024;

function readSmall(path: string): string | undefined {
  try {
    const text = readFileSync(path, "utf8");
    return text.length > MAX_PROC_FILE_BYTES ? text.slice(0, MAX_PROC_FILE_BYTES) : text;
  } catch {
    return undefined;
  }
}

/**
 * Parses Linux /proc/cpuinfo (x86 "flags", ARM "Features"). Physical cores are the distinct
 * (physical id, core id) pairs; where those are absent (ARM, some VMs) every processor counts.
 */
export function parseCpuInfo(text: string): Partial<CpuInfo> {
  const blocks = text.split(/\n\s*\n/).filter((b) => /^processor\s*:/m.test(b));
  if (blocks.length === 0) return {};
  const field = (block: string, name: string) =>
    new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(block)?.[1]?.trim() || undefined;
  const cores = new Set<string>();
  let topology = true;
  for (const b of blocks) {
    const pkg = field(b, "physical id");
    const core = field(b, "core id");
    if (pkg === undefined || core === undefined) topology = false;
    else cores.add(`${pkg}:${core}`);
  }
  const first = blocks[0] ?? "";
  const flagText = field(first, "flags") ?? field(first, "Features") ?? "";
  const have = new Set(flagText.split(/\s+/));
  const out: Partial<CpuInfo> = {
    logicalCores: blocks.length,
    physicalCores: topology ? cores.size : blocks.length,
    flags: INFERENCE_CPU_FLAGS.filter((f) => have.has(f)),
  };
  const model = field(first, "model name") ?? field(first, "Model") ?? field(first, "Hardware");
  if (model) out.model = model.replace(/\s+/g, " ");
  return out;
}

/** Parses /proc/meminfo's MemTotal and MemAvailable (kB) into bytes. */
export function parseMemInfo(text: string): Partial<MemoryInfo> {
  const kb = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s*kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const out: Partial<MemoryInfo> = {};
  const total = kb("MemTotal");
  const available = kb("MemAvailable");
  if (total !== undefined) out.totalBytes = total;
  if (available !== undefined) out.availableBytes = available;
  return out;
}

export function detectCpu(): CpuInfo {
  const cpus = os.cpus();
  const logical = typeof os.availableParallelism === "function" ? os.availableParallelism() : cpus.length;
  const fromProc = process.platform === "linux" ? parseCpuInfo(readSmall("/proc/cpuinfo") ?? "") : {};
  const logicalCores = fromProc.logicalCores ?? Math.max(1, logical);
  return {
    model: fromProc.model ?? cpus[0]?.model?.trim() ?? "unknown CPU",
    physicalCores: Math.min(fromProc.physicalCores ?? logicalCores, logicalCores),
    logicalCores,
    flags: fromProc.flags ?? [],
  };
}

export function detectMemory(): MemoryInfo {
  const fromProc = process.platform === "linux" ? parseMemInfo(readSmall("/proc/meminfo") ?? "") : {};
  return {
    totalBytes: fromProc.totalBytes ?? os.totalmem(),
    availableBytes: fromProc.availableBytes ?? os.freemem(),
  };
}

export function detectOs(): OsInfo {
  const info: OsInfo = { platform: process.platform, arch: process.arch, release: os.release() };
  if (process.platform === "linux") {
    const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readSmall("/etc/os-release") ?? "")?.[1];
    if (pretty) info.name = pretty;
  }
  return info;
}
