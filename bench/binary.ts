/**
 * The compiled binary against running from source, in the same run: binary, runtime folder and archive
 * sizes; process start to `--version` printed; process start to the first token of stories260k.
 * Usage: bun bench/binary.ts [runs=5] [--all]   (--all also builds the release with every llama.cpp
 * variant installed, CPU + Vulkan + CUDA, for its sizes; the timings use the CPU-only build.)
 */
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { release } from "../scripts/release.ts";
import { BINARY_PATH, RUNTIME_DIR } from "../src/release/layout.ts";
import { listFiles } from "../src/release/runtime.ts";
import { BUN, CLI, MIRROR, machine, median } from "./lib.ts";

const runs = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 5);
const withAll = process.argv.includes("--all");
const tmp = mkdtempSync(join(tmpdir(), "infernet-bench-binary-"));
const env = { ...process.env, INFERNET_MODEL_MIRROR: MIRROR, INFERNET_MDNS: "false" };

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function folderBytes(dir: string): number {
  return listFiles(dir).reduce((sum, path) => sum + Bun.file(join(dir, path)).size, 0);
}

/** Wall time from spawn to the process's exit. */
async function toExit(cmd: string[], home: string): Promise<number> {
  const start = performance.now();
  const proc = Bun.spawn(cmd, { env: { ...env, INFERNET_HOME: home }, stdout: "pipe", stderr: "pipe" });
  await new Response(proc.stdout).text();
  if ((await proc.exited) !== 0) throw new Error(`${cmd.join(" ")} failed: ${await new Response(proc.stderr).text()}`);
  return performance.now() - start;
}

/** Wall time from spawn to the first bytes of generated text on stdout. */
async function toFirstToken(cmd: string[], home: string): Promise<number> {
  const start = performance.now();
  const proc = Bun.spawn(cmd, { env: { ...env, INFERNET_HOME: home }, stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  let first = Number.NaN;
  for (;;) {
    const chunk = await reader.read();
    if (chunk.done) break;
    if (Number.isNaN(first) && chunk.value.length > 0) first = performance.now() - start;
  }
  if ((await proc.exited) !== 0) throw new Error(`${cmd.join(" ")} failed: ${await new Response(proc.stderr).text()}`);
  return first;
}

async function series(measure: (home: string) => Promise<number>): Promise<{ first: number; median: number }> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push(await measure(mkdtempSync(join(tmp, "home-"))));
  return { first: times[0]!, median: median(times) };
}

try {
  const cpu = await release({ llama: "cpu", out: join(tmp, "cpu") });
  const binary = join(cpu.dir, BINARY_PATH);
  const sizes = [
    ["binary (bin/infernet)", mb(Bun.file(binary).size)],
    ["runtime/ (CPU llama.cpp)", mb(folderBytes(join(cpu.dir, RUNTIME_DIR)))],
    ["archive (CPU llama.cpp)", mb(Bun.file(cpu.archive).size)],
  ];
  if (withAll) {
    const all = await release({ llama: "all", out: join(tmp, "all") });
    sizes.push(["runtime/ (CPU + Vulkan + CUDA)", mb(folderBytes(join(all.dir, RUNTIME_DIR)))]);
    sizes.push(["archive (CPU + Vulkan + CUDA)", mb(Bun.file(all.archive).size)]);
  }
  const prompt = ["run", "stories260k", "Once upon a time", "--max-tokens", "20"];
  const rows = [
    ["--version", "binary", await series((h) => toExit([binary, "--version"], h))],
    ["--version", "source", await series((h) => toExit([BUN, CLI, "--version"], h))],
    ["first token", "binary", await series((h) => toFirstToken([binary, ...prompt], h))],
    ["first token", "source", await series((h) => toFirstToken([BUN, CLI, ...prompt], h))],
  ] as const;

  const lines = [
    "",
    `## One binary: sizes and cold start, compiled vs source (${new Date().toISOString().slice(0, 10)})`,
    "",
    `\`bun bench/binary.ts ${runs}${withAll ? " --all" : ""}\` on ${machine()}. Start times are spawn to exit`,
    "(`--version`) and spawn to the first bytes of text (stories260k, model from the mirror, fresh",
    `INFERNET_HOME each run), ${runs} runs each; "first" is the first run after the build.`,
    "",
    "| size | |",
    "| --- | --- |",
    ...sizes.map(([what, size]) => `| ${what} | ${size} |`),
    "",
    "| start to | run from | first run | median |",
    "| --- | --- | --- | --- |",
    ...rows.map(([what, from, t]) => `| ${what} | ${from} | ${t.first.toFixed(0)} ms | ${t.median.toFixed(0)} ms |`),
    "",
  ];
  const text = lines.join("\n");
  process.stdout.write(text);
  appendFileSync(join(import.meta.dir, "RESULTS.md"), text);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
