import { expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../../test/helpers/paths.ts";
import { GPU_SAMPLE_INTERVAL_MS, LiveSampler, parseLiveGpus } from "./live.ts";

const MiB = 1024 * 1024;
/**
 * The first line is what `nvidia-smi --query-gpu=index,name,memory.used,memory.total,utilization.gpu,
 * temperature.gpu --format=csv,noheader,nounits` printed on the project's H200 (driver 580.159.04,
 * idle; each run took 0.02 s). The second is a busy GPU of a multi-GPU box as the same query prints
 * one, with a field the driver cannot report.
 */
const LIVE_QUERY = "0, NVIDIA H200, 0, 143771, 0, 35\n1, NVIDIA H200, 40960, 143771, 97, [N/A]\n";

test("parses the live query's output, a field the driver cannot report left undefined", () => {
  expect(parseLiveGpus(LIVE_QUERY)).toEqual([
    {
      index: 0,
      name: "NVIDIA H200",
      memoryUsedBytes: 0,
      memoryTotalBytes: 143771 * MiB,
      utilizationPercent: 0,
      temperatureC: 35,
    },
    {
      index: 1,
      name: "NVIDIA H200",
      memoryUsedBytes: 40960 * MiB,
      memoryTotalBytes: 143771 * MiB,
      utilizationPercent: 97,
      temperatureC: undefined,
    },
  ]);
  expect(parseLiveGpus("")).toEqual([]);
  expect(() => parseLiveGpus("0, only two")).toThrow();
});

test("without nvidia-smi: no GPUs, CPU use from the second sample on, memory from the kernel", async () => {
  const sampler = new LiveSampler({ command: "infernet-no-such-nvidia-smi" });
  expect(sampler.hasGpuTool).toBe(false);
  const first = await sampler.sample();
  expect(first.gpus).toEqual([]);
  expect(first.cpuUsedPercent).toBeUndefined();
  expect(first.memory.totalBytes).toBeGreaterThan(0);
  expect(first.memory.usedBytes).toBeGreaterThan(0);
  expect(first.memory.usedBytes).toBeLessThanOrEqual(first.memory.totalBytes);
  // Burn CPU for several kernel ticks (10 ms each) so the counters surely move between the samples.
  let x = 0;
  const until = performance.now() + 100;
  while (performance.now() < until) x += 1;
  expect(x).toBeGreaterThan(0);
  const second = await sampler.sample();
  expect(second.cpuUsedPercent).toBeGreaterThanOrEqual(0);
  expect(second.cpuUsedPercent).toBeLessThanOrEqual(100);
});

test("runs nvidia-smi at most once per interval and serves the last answer meanwhile", async () => {
  // nvidia-smi cannot run on this machine: a script prints the captured answer and counts its runs.
  using dir = tempDir();
  const count = join(dir.path, "runs");
  const script = join(dir.path, "nvidia-smi");
  writeFileSync(script, `#!/bin/sh\necho x >> '${count}'\nprintf '%s' '${LIVE_QUERY}'\n`);
  chmodSync(script, 0o755);
  let now = 1_000_000;
  const sampler = new LiveSampler({ command: script, now: () => now });
  const runs = async () => (await Bun.file(count).text()).trim().split("\n").length;

  const first = await sampler.sample();
  expect(first.gpus.map((g) => g.utilizationPercent)).toEqual([0, 97]);
  await sampler.sample();
  await sampler.sample();
  expect(await runs()).toBe(1);

  now += GPU_SAMPLE_INTERVAL_MS;
  const stale = await sampler.sample();
  // The refresh runs in the background: this answer is the previous one, at once.
  expect(stale.gpus).toHaveLength(2);
  await sampler.settled();
  expect(await runs()).toBe(2);
});

test("a failing nvidia-smi gives no GPU figures rather than an error", async () => {
  using dir = tempDir();
  const script = join(dir.path, "nvidia-smi");
  writeFileSync(
    script,
    "#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9\n",
  );
  chmodSync(script, 0o755);
  const sample = await new LiveSampler({ command: script }).sample();
  expect(sample.gpus).toEqual([]);
});
