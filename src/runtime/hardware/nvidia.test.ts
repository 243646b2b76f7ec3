import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cudaBusId, queryCudaDevices } from "./cuda.ts";
import { detectNvidia } from "./nvidia.ts";

/**
 * The live path end to end: real nvidia-smi stand-in processes (shell scripts printing the real
 * H100 captures, or failing the ways nvidia-smi fails) and, where a C compiler exists, a stand-in
 * libcuda.so built from C with the driver API's real signatures, loaded through bun:ffi.
 */
const H100 = join(import.meta.dir, "../../../../shared/data/gpu/h100");
let dir: string;

function script(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

const FAKE_LIBCUDA_C = `
#include <string.h>
static int ready = 0;
int cuInit(unsigned int flags) {
#ifdef FAIL_INIT
  return 100; /* CUDA_ERROR_NO_DEVICE */
#endif
  ready = flags == 0; return ready ? 0 : 1;
}
int cuDeviceGetCount(int *n) { if (!ready) return 3; *n = 2; return 0; }
int cuDeviceGet(int *d, int ordinal) { if (!ready || ordinal < 0 || ordinal > 1) return 101; *d = ordinal; return 0; }
int cuDeviceGetByPCIBusId(int *d, const char *id) {
  if (!ready) return 3;
  if (strcmp(id, "0000:00:06.0") == 0) { *d = 0; return 0; }
  return 101; /* CUDA_ERROR_INVALID_DEVICE */
}
int cuDeviceGetName(char *name, int len, int d) {
  strncpy(name, d == 0 ? "NVIDIA H100 80GB HBM3" : "Fake GPU", len); return 0;
}
int cuDeviceGetAttribute(int *v, int attr, int d) {
  if (attr == 16) { *v = d == 0 ? 132 : 46; return 0; }
  if (attr == 75) { *v = d == 0 ? 9 : 8; return 0; }
  if (attr == 76) { *v = d == 0 ? 0 : 6; return 0; }
  return 1;
}
`;
const compiler = Bun.which("cc");
let fakeLib = "";
let failingLib = "";

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "infernet-nvidia-"));
  if (!compiler) return;
  writeFileSync(join(dir, "libcuda.c"), FAKE_LIBCUDA_C);
  for (const [out, flags] of [
    ["libcuda-fake.so", []],
    ["libcuda-noinit.so", ["-DFAIL_INIT"]],
  ] as const) {
    const cc = Bun.spawnSync([compiler, "-shared", "-fPIC", ...flags, "-o", join(dir, out), join(dir, "libcuda.c")]);
    if (cc.exitCode !== 0) throw new Error(cc.stderr.toString());
  }
  fakeLib = join(dir, "libcuda-fake.so");
  failingLib = join(dir, "libcuda-noinit.so");
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("detectNvidia with nvidia-smi stand-ins", () => {
  test("this machine: no nvidia-smi gives an empty list and a reason, not an error", async () => {
    const result = await detectNvidia({ command: "nvidia-smi-not-installed-here" });
    expect(result).toEqual({ gpus: [], reason: "nvidia-smi-not-installed-here not available" });
  });

  test("the real H100 captures through a real process: query args, XML facts, table SMs", async () => {
    const args = join(dir, "args.log");
    const smi = script(
      "nvidia-smi-h100",
      `echo "$@" >> '${args}'
case "$1" in
  -q) cat '${join(H100, "nvidia-smi-q.xml")}' ;;
  --query-gpu=*) cat '${join(H100, "nvidia-smi-query.csv")}' ;;
  *) exit 2 ;;
esac`,
    );
    const result = await detectNvidia({ command: smi, cudaLibrary: false });
    expect(readFileSync(args, "utf8").trim().split("\n")).toEqual([
      "--query-gpu=index,name,uuid,pci.bus_id,memory.total,memory.used,memory.free,utilization.gpu,temperature.gpu,power.draw,power.limit,clocks.sm,clocks.max.sm,compute_cap,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader,nounits",
      "-q -x",
    ]);
    expect(result.reason).toBeUndefined();
    expect(result.driverVersion).toBe("580.159.04");
    expect(result.cudaVersion).toBe("13.0");
    expect(result.gpus).toHaveLength(1);
    const gpu = result.gpus[0];
    expect(gpu?.name).toBe("NVIDIA H100 80GB HBM3");
    expect(gpu?.memoryTotalBytes).toBe(81559 * 1024 * 1024);
    expect(gpu?.architecture).toBe("Hopper");
    expect(gpu?.computeCapability).toBe("9.0");
    expect(gpu?.smCount).toBe(132);
    expect(gpu?.smCountSource).toBe("known-table");
    expect(gpu?.cudaCores).toBe(16_896);
  });

  test("nvidia-smi failing, finding no device, or printing nonsense: clean empty results", async () => {
    const failing = script(
      "smi-fail",
      `echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
exit 9`,
    );
    expect(await detectNvidia({ command: failing })).toEqual({
      gpus: [],
      reason: `${failing} failed (exit 9): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.`,
    });
    const none = script("smi-none", `echo "No devices were found"\nexit 6`);
    expect(await detectNvidia({ command: none })).toEqual({ gpus: [], reason: `${none} lists no GPU` });
    const nonsense = script("smi-nonsense", `echo "hello, world"`);
    const r = await detectNvidia({ command: nonsense });
    expect(r.gpus).toEqual([]);
    expect(r.reason).toMatch(/^could not read .* output: nvidia-smi: line "hello, world" has 2 fields, expected 17$/);
    const silent = script("smi-silent", "exit 0");
    expect(await detectNvidia({ command: silent })).toEqual({ gpus: [], reason: `${silent} lists no GPU` });
  });

  test("a hung nvidia-smi is killed at the deadline", async () => {
    const hung = script("smi-hung", "exec sleep 60");
    const t0 = performance.now();
    const result = await detectNvidia({ command: hung, timeoutMs: 300 });
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect(result).toEqual({ gpus: [], reason: `${hung} did not answer within 0.3 s` });
  });

  test("endless output is cut off at the cap instead of filling memory", async () => {
    const flood = script("smi-flood", "exec yes '0, NVIDIA'");
    const t0 = performance.now();
    const result = await detectNvidia({ command: flood, timeoutMs: 20_000 });
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(result).toEqual({ gpus: [], reason: `${flood} printed more than 4194304 bytes` });
  });

  test("an aborted signal stops detection with AbortedError", async () => {
    const hung = script("smi-hung-abort", "exec sleep 60");
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const err = await detectNvidia({ command: hung, signal: controller.signal }).catch((e: unknown) => e);
    expect((err as Error).name).toBe("AbortedError");
  });
});

describe("SM count from the CUDA driver API", () => {
  test("bus ids are given to the driver with a 4-digit domain", () => {
    expect(cudaBusId("00000000:00:06.0")).toBe("0000:00:06.0");
    expect(cudaBusId("00010000:3B:00.0")).toBe("10000:3B:00.0");
    expect(cudaBusId("0000:af:00.0")).toBe("0000:af:00.0");
  });

  test("no driver library, or a library without the driver API: undefined, no throw", () => {
    const gpus = [{ index: 0, name: "NVIDIA H100 80GB HBM3", pciBusId: "00000000:00:06.0" }];
    expect(queryCudaDevices(gpus)).toEqual([undefined]);
    expect(queryCudaDevices(gpus, { libraryPath: join(dir, "missing.so") })).toEqual([undefined]);
    expect(queryCudaDevices(gpus, { libraryPath: "libm.so.6" })).toEqual([undefined]);
  });

  test.skipIf(!compiler)("driver found by bus id, by index with a matching name, or not at all", () => {
    const result = queryCudaDevices(
      [
        { index: 0, name: "NVIDIA H100 80GB HBM3", pciBusId: "00000000:00:06.0" },
        { index: 1, name: "Fake GPU" },
        { index: 1, name: "Another GPU" },
        { index: 2, name: "Gone", pciBusId: "00000000:00:07.0" },
      ],
      { libraryPath: fakeLib },
    );
    expect(result).toEqual([
      { smCount: 132, computeCapability: "9.0" },
      { smCount: 46, computeCapability: "8.6" },
      undefined,
      undefined,
    ]);
    expect(queryCudaDevices([{ index: 0, name: "NVIDIA H100 80GB HBM3" }], { libraryPath: failingLib })).toEqual([
      undefined,
    ]);
  });

  test.skipIf(!compiler)("detection prefers the driver's count and falls back to the table", async () => {
    const smi = script("smi-two", `cat '${join(H100, "nvidia-smi-query.csv")}'`);
    const viaDriver = await detectNvidia({ command: smi, xml: false, cudaLibrary: fakeLib });
    expect(viaDriver.gpus[0]).toMatchObject({ smCount: 132, smCountSource: "cuda", cudaCores: 16_896 });
    const driverDown = await detectNvidia({ command: smi, xml: false, cudaLibrary: failingLib });
    expect(driverDown.gpus[0]).toMatchObject({ smCount: 132, smCountSource: "known-table", cudaCores: 16_896 });
  });
});
