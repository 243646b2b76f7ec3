/**
 * The compiled binary against running from source, in the same run: binary, runtime folder and archive
 * sizes; process start to `--version` printed; process start to the first token of stories260k.
 * Usage: bun bench/binary.ts [runs=5] [--all]   (--all also builds the release with every llama.cpp
 * variant installed, CPU + Vulkan + CUDA, for its sizes; the timings use the CPU-only build.)
 *
 * bun bench/binary.ts [runs=5] --verify [--cpu]: the runtime check with and without remembered verdicts
 * (src/release/verdicts.ts) on the full release (--cpu: the CPU-only one), per piece as a new process does
 * it (read the manifest's files, the verdict file), and the full binary's start to first token with its
 * verdict file deleted before each run against kept.
 */
import { appendFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "../scripts/build.ts";
import { release } from "../scripts/release.ts";
import { BINARY_PATH, RUNTIME_DIR } from "../src/release/layout.ts";
import { checkPiece, listFiles, readManifest } from "../src/release/runtime.ts";
import { RACY_WINDOW_NS, VERDICTS_FILE, Verdicts } from "../src/release/verdicts.ts";
import { BUN, CLI, MIRROR, machine, median } from "./lib.ts";

const runs = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 5);
const withAll = process.argv.includes("--all");
const verify = process.argv.includes("--verify");
const cpuOnly = process.argv.includes("--cpu");
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

async function startup(): Promise<string> {
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
  return lines.join("\n");
}

function timed(fn: () => void): number {
  const start = performance.now();
  fn();
  return performance.now() - start;
}

function stats(times: number[]): { first: number; median: number } {
  return { first: times[0]!, median: median(times) };
}

async function verification(): Promise<string> {
  const built = await build({ llama: cpuOnly ? "cpu" : "all", out: join(tmp, "verify") });
  const manifest = readManifest(built.dir);
  const runtime = join(built.dir, RUNTIME_DIR);
  const pieces = [
    ...new Set(
      Object.keys(manifest.files).map((p) =>
        p
          .split("/")
          .slice(0, p.startsWith("llama/") ? 2 : 1)
          .join("/"),
      ),
    ),
  ];
  // Files changed within the racy window get no verdict; the release was just built.
  await Bun.sleep(Number(RACY_WINDOW_NS / 1_000_000n));
  const none = join(tmp, "never-saved.json");
  const cache = join(tmp, VERDICTS_FILE);
  const rows: string[] = [];
  for (const piece of pieces) {
    const files = Object.keys(manifest.files).filter((p) => p.startsWith(`${piece}/`));
    const bytes = files.reduce((sum, p) => sum + statSync(join(runtime, p)).size, 0);
    const without: number[] = [];
    for (let i = 0; i < runs; i++)
      without.push(timed(() => checkPiece(built.dir, piece, manifest, new Verdicts(none))));
    const primed = new Verdicts(cache);
    checkPiece(built.dir, piece, manifest, primed);
    primed.save();
    const cached: number[] = [];
    for (let i = 0; i < runs; i++) {
      // As a new process: read the verdict file, then check.
      cached.push(
        timed(() => {
          const check = checkPiece(built.dir, piece, manifest, new Verdicts(cache));
          if (check.hashed !== 0) throw new Error(`${piece}: ${check.hashed} files hashed with verdicts cached`);
        }),
      );
    }
    const w = stats(without);
    const c = stats(cached);
    rows.push(
      `| ${piece} | ${files.length} | ${mb(bytes)} | ${w.first.toFixed(0)} / ${w.median.toFixed(0)} ms | ${c.first.toFixed(1)} / ${c.median.toFixed(1)} ms |`,
    );
  }

  const binary = join(built.dir, BINARY_PATH);
  const verdicts = join(built.dir, VERDICTS_FILE);
  const prompt = ["run", "stories260k", "Once upon a time", "--max-tokens", "20"];
  const home = () => mkdtempSync(join(tmp, "home-"));
  // One unmeasured run writes the verdicts; then the two cases alternate so that drift on a shared
  // machine falls on both alike.
  await toFirstToken([binary, ...prompt], home());
  const deleted: number[] = [];
  const kept: number[] = [];
  for (let i = 0; i < runs; i++) {
    rmSync(verdicts, { force: true });
    deleted.push(await toFirstToken([binary, ...prompt], home()));
    kept.push(await toFirstToken([binary, ...prompt], home()));
  }
  const noVerdicts = stats(deleted);
  const withVerdicts = stats(kept);

  return [
    "",
    `## Runtime check with remembered verdicts (${new Date().toISOString().slice(0, 10)})`,
    "",
    `\`bun bench/binary.ts ${runs} --verify${cpuOnly ? " --cpu" : ""}\` on ${machine()}, release built with`,
    `\`--llama ${cpuOnly ? "cpu" : "all"}\`. Per piece: \`checkPiece\` as a new process runs it (a fresh verdict file read`,
    `for each run), ${runs} runs each, first / median; files in the page cache (just built). Without verdicts`,
    "is what every start did before; with them no file is hashed, only stat'd.",
    "",
    "| piece | files | size | without verdicts | with verdicts |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
    "",
    `| start to first token (stories260k, gpu=auto; runs alternate) | first run | median of ${runs} |`,
    "| --- | --- | --- |",
    `| verdict file deleted before each run | ${noVerdicts.first.toFixed(0)} ms | ${noVerdicts.median.toFixed(0)} ms |`,
    `| verdict file kept | ${withVerdicts.first.toFixed(0)} ms | ${withVerdicts.median.toFixed(0)} ms |`,
    "",
  ].join("\n");
}

try {
  const text = verify ? await verification() : await startup();
  process.stdout.write(text);
  appendFileSync(join(import.meta.dir, "RESULTS.md"), text);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
