import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { infernet as runCli } from "./helpers/cli.ts";
import { SHARED } from "./helpers/paths.ts";

/**
 * `infernet gpu` end to end: the real CLI in a child process with a fresh INFERNET_HOME. The GPU
 * case puts an nvidia-smi stand-in first on PATH that prints the real H100 captures.
 */
const H100 = join(SHARED, "data/gpu/h100");

let tmp: string;
let emptyPath: string;
let fakeGpuPath: string;

beforeAll(() => {
  tmp = mkdtempSync(join(os.tmpdir(), "infernet-cli-gpu-"));
  emptyPath = join(tmp, "empty-bin");
  fakeGpuPath = join(tmp, "gpu-bin");
  mkdirSync(emptyPath);
  mkdirSync(fakeGpuPath);
  const smi = join(fakeGpuPath, "nvidia-smi");
  writeFileSync(
    smi,
    `#!/bin/sh
PATH=/usr/bin:/bin
case "$1" in
  -q) cat '${join(H100, "nvidia-smi-q.xml")}' ;;
  --query-gpu=*) cat '${join(H100, "nvidia-smi-query.csv")}' ;;
  *) exit 2 ;;
esac
`,
  );
  chmodSync(smi, 0o755);
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function home(name: string): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The real CLI with `env` applied last (PATH decides which nvidia-smi, if any, it finds). */
function infernet(args: string[], env: Record<string, string> & { INFERNET_HOME: string }) {
  return runCli(args, { home: env.INFERNET_HOME, env: { HOME: tmp, ...env } });
}

describe("infernet gpu", () => {
  test("on a machine without nvidia-smi: says so, shows CPU and RAM, no benchmarks yet", async () => {
    const r = await infernet(["gpu"], { INFERNET_HOME: home("plain"), PATH: emptyPath });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("No NVIDIA GPU found (nvidia-smi not available): inference runs on the CPU\n");
    expect(r.stdout).toMatch(/\n {2}CPU {10}.+, \d+ cores \/ \d+ threads/);
    expect(r.stdout).toMatch(/\n {2}RAM {10}[\d.]+ GiB total, [\d.]+ GiB available\n/);
    expect(r.stdout).toContain("Benchmarks: none yet (run `infernet gpu --bench`");
  });

  test("--json on a machine without nvidia-smi", async () => {
    const r = await infernet(["gpu", "--json"], { INFERNET_HOME: home("json"), PATH: emptyPath });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.machine).toMatch(/^[0-9a-f]{32}$/);
    expect(out.nvidia).toEqual({ gpus: [], reason: "nvidia-smi not available" });
    expect(out.cpu.logicalCores).toBe(os.cpus().length);
    expect(out.memory.totalBytes).toBe(os.totalmem());
    expect(out.os.arch).toBe(process.arch);
    expect(out.benchmarks).toEqual([]);
  });

  test("with the H100 nvidia-smi stand-in first on PATH: GPU summary and JSON", async () => {
    const env = { INFERNET_HOME: home("h100"), PATH: `${fakeGpuPath}:${emptyPath}` };
    const text = await infernet(["gpu"], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("GPU 0: NVIDIA H100 80GB HBM3 (Hopper)\n");
    expect(text.stdout).toContain("  VRAM         0 MiB used of 79.6 GiB (79.2 GiB free)\n");
    expect(text.stdout).toContain("  CUDA cores   16,896 (132 SMs from published specs; compute capability 9.0)\n");
    expect(text.stdout).toContain("  Driver       580.159.04, CUDA 13.0\n");
    expect(text.stdout).toContain("  Now          0% busy, 33 C, 115 W of 700 W, SM 555/1980 MHz, PCIe gen 5 x16\n");
    expect(text.stdout).not.toContain("No NVIDIA GPU");

    const json = JSON.parse((await infernet(["gpu", "--json"], env)).stdout);
    expect(json.nvidia.driverVersion).toBe("580.159.04");
    expect(json.nvidia.cudaVersion).toBe("13.0");
    expect(json.nvidia.gpus).toHaveLength(1);
    expect(json.nvidia.gpus[0]).toMatchObject({
      name: "NVIDIA H100 80GB HBM3",
      uuid: "GPU-faad593f-33da-6e04-611f-40d789fbba57",
      memoryTotalBytes: 81559 * 1024 * 1024,
      computeCapability: "9.0",
      smCount: 132,
      smCountSource: "known-table",
      cudaCores: 16_896,
    });
    const plain = JSON.parse((await infernet(["gpu", "--json"], { ...env, PATH: emptyPath })).stdout);
    expect(plain.machine).not.toBe(json.machine);
  });

  test("--bench measures on the real stories260k, stores per machine, and plain `gpu` shows it", async () => {
    const env = {
      INFERNET_HOME: home("bench"),
      INFERNET_MODEL_MIRROR: join(SHARED, "models"),
      PATH: emptyPath,
    };
    const bench = await infernet(["gpu", "--bench", "--json"], env);
    expect(bench.code).toBe(0);
    expect(bench.stderr).toContain("Measuring memory bandwidth...");
    expect(bench.stderr).toContain("Measuring llama tokens/s on stories260k...");
    const measured = JSON.parse(bench.stdout);
    const byName = Object.fromEntries(measured.benchmarks.map((b: { name: string }) => [b.name, b]));
    expect(Object.keys(byName).sort()).toEqual(["llama.stories260k", "memory.copy"]);
    expect(byName["memory.copy"]).toMatchObject({ unit: "GB/s" });
    expect(byName["memory.copy"].value).toBeGreaterThan(0.5);
    expect(byName["llama.stories260k"]).toMatchObject({
      unit: "tokens/s",
      detail: { model: "stories260k", backend: "cpu", runtime: "llama" },
    });
    expect(byName["llama.stories260k"].value).toBeGreaterThan(100);

    const shown = await infernet(["gpu"], env);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(
      /\n {2}llama\.stories260k {2}[\d,.]+ tokens\/s +measured \d{4}-\d\d-\d\d \d\d:\d\d UTC\n/,
    );
    expect(shown.stdout).toMatch(/\n {2}memory\.copy {8}[\d.]+ GB\/s +measured /);

    const otherMachine = JSON.parse((await infernet(["gpu", "--json"], { ...env, PATH: fakeGpuPath })).stdout);
    expect(otherMachine.benchmarks).toEqual([]);
  });

  test("an unknown flag is a usage error", async () => {
    const r = await infernet(["gpu", "--fast"], { INFERNET_HOME: home("usage"), PATH: emptyPath });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/^infernet: gpu: Unknown option '--fast'/);
  });
});
