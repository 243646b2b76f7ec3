import { describe, expect, test } from "bun:test";
import os from "node:os";
import { parseCpuInfo, parseMemInfo } from "./cpu.ts";
import {
  currentMachineFingerprint,
  detectCpu,
  detectHardware,
  detectMemory,
  detectOs,
  machineFingerprint,
} from "./index.ts";

const GIB = 1024 ** 3;

describe("CPU, memory and OS of this machine", () => {
  test("CPU facts are sane", () => {
    const cpu = detectCpu();
    expect(cpu.model.length).toBeGreaterThan(0);
    expect(cpu.logicalCores).toBe(os.cpus().length);
    expect(cpu.physicalCores).toBeGreaterThanOrEqual(1);
    expect(cpu.physicalCores).toBeLessThanOrEqual(cpu.logicalCores);
    if (process.arch === "x64") expect(cpu.flags).toContain("sse4_2");
  });

  test("memory figures are sane", () => {
    const memory = detectMemory();
    expect(memory.totalBytes).toBe(os.totalmem());
    expect(memory.totalBytes).toBeGreaterThan(GIB / 2);
    expect(memory.availableBytes).toBeGreaterThan(0);
    expect(memory.availableBytes).toBeLessThanOrEqual(memory.totalBytes);
  });

  test("OS facts", () => {
    const info = detectOs();
    expect(info.platform).toBe(process.platform);
    expect(info.arch).toBe(process.arch);
    expect(info.release).toBe(os.release());
  });

  test("whole-machine detection on this GPU-less machine reports no GPU, cleanly", async () => {
    const hw = await detectHardware();
    expect(hw.nvidia.gpus).toEqual([]);
    expect(hw.nvidia.reason).toBe("nvidia-smi not available");
    expect(hw.cpu.logicalCores).toBe(os.cpus().length);
  });
});

describe("/proc parsers", () => {
  test("x86 cpuinfo with hyperthreads: physical cores from (physical id, core id)", () => {
    const block = (processor: number, core: number) =>
      `processor\t: ${processor}\nmodel name\t: Intel(R) Xeon(R)   Gold 6338 CPU @ 2.00GHz\nphysical id\t: 0\ncore id\t\t: ${core}\nflags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512_vnni amx_tile\n`;
    const text = [block(0, 0), block(1, 1), block(2, 0), block(3, 1)].join("\n");
    expect(parseCpuInfo(text)).toEqual({
      model: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
      logicalCores: 4,
      physicalCores: 2,
      flags: ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "amx_tile"],
    });
  });

  test("ARM cpuinfo without topology or model name: every processor counts, Features are flags", () => {
    const block = (n: number) =>
      `processor\t: ${n}\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes crc32 asimddp sve i8mm bf16\nCPU implementer\t: 0x41\n`;
    expect(parseCpuInfo([block(0), block(1), block(2)].join("\n"))).toEqual({
      logicalCores: 3,
      physicalCores: 3,
      flags: ["asimd", "asimddp", "sve", "i8mm", "bf16"],
    });
  });

  test("unreadable or empty cpuinfo gives nothing, not an error", () => {
    expect(parseCpuInfo("")).toEqual({});
    expect(parseCpuInfo("garbage\n\x00\x01")).toEqual({});
  });

  test("meminfo", () => {
    const text = "MemTotal:       24683520 kB\nMemFree:        23981568 kB\nMemAvailable:   24336384 kB\n";
    expect(parseMemInfo(text)).toEqual({ totalBytes: 24683520 * 1024, availableBytes: 24336384 * 1024 });
    expect(parseMemInfo("nonsense")).toEqual({});
  });
});

describe("machine fingerprint", () => {
  const base = {
    cpu: { model: "AMD EPYC", physicalCores: 2, logicalCores: 2, flags: [] },
    memory: { totalBytes: 24 * GIB, availableBytes: 20 * GIB },
    os: { platform: "linux" as const, arch: "x64", release: "6.1" },
    nvidia: { gpus: [] },
  };
  const h100 = { index: 0, name: "NVIDIA H100 80GB HBM3", uuid: "GPU-faad593f-33da-6e04-611f-40d789fbba57" };
  const a10 = { index: 1, name: "NVIDIA A10", uuid: "GPU-11111111-2222-3333-4444-555555555555" };

  test("stable for the same hardware, whatever the free memory, kernel or GPU order", () => {
    const fp = machineFingerprint(base);
    expect(fp).toMatch(/^[0-9a-f]{32}$/);
    expect(machineFingerprint({ ...base, memory: { totalBytes: 24 * GIB - 3 * 1024 * 1024, availableBytes: 1 } })).toBe(
      fp,
    );
    expect(machineFingerprint({ ...base, os: { ...base.os, release: "6.8" } })).toBe(fp);
    expect(machineFingerprint({ ...base, nvidia: { gpus: [h100, a10] } })).toBe(
      machineFingerprint({
        ...base,
        nvidia: {
          gpus: [
            { ...a10, index: 0 },
            { ...h100, index: 1 },
          ],
        },
      }),
    );
  });

  test("changes with the CPU, cores, RAM or GPUs", () => {
    const fp = machineFingerprint(base);
    const variants = [
      { ...base, cpu: { ...base.cpu, model: "AMD EPYC 9654" } },
      { ...base, cpu: { ...base.cpu, physicalCores: 1 } },
      { ...base, cpu: { ...base.cpu, logicalCores: 4 } },
      { ...base, memory: { ...base.memory, totalBytes: 48 * GIB } },
      { ...base, nvidia: { gpus: [h100] } },
      { ...base, nvidia: { gpus: [a10] } },
    ];
    const all = new Set([fp, ...variants.map(machineFingerprint)]);
    expect(all.size).toBe(variants.length + 1);
  });

  test("this machine's fingerprint is computed once and stays the same", async () => {
    const a = await currentMachineFingerprint();
    const b = await currentMachineFingerprint();
    expect(a).toBe(b);
    expect(a).toBe(machineFingerprint(await detectHardware({ xml: false, cudaLibrary: false })));
  });
});
