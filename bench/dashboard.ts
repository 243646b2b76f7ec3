/**
 * The dashboard's cost (issue 6, "Benchmarks"): a real `infernet dash` in a 120x40 pseudo-terminal
 * (bench/dash-pty.ts) attached to a real aggregator (`infernet start --aggregator`) with two mnist-8
 * provider processes and a client node, all on 127.0.0.1 over QUIC.
 *
 * After 10 s of unmeasured streaming (warm-up), phases of N seconds each, in this order:
 *  1. node idle, no dashboard;            2. ~100 shards/s streaming, no dashboard;
 *  3. dashboard attached, node idle;      4. dashboard attached, ~100 shards/s streaming.
 * CPU is utime + stime from /proc/PID/stat over the window, as % of one core, for the dashboard and
 * the aggregator (and the other node processes together); RSS from /proc/PID/status; frames are the
 * synchronized-update marks Ink 8 writes around each frame (Ink has no frame counter to hook). The
 * stream is one `infernet submit --detach` of 100 one-image shards a second (bench/dash-feed.ts);
 * shards/s is what the aggregator's SQLite says was verified inside the window. Then the snapshot
 * cost: ms per `GET /v1/dashboard` through DashboardClient (connect once, calls back to back), idle
 * and streaming.
 *
 * `--soak MINUTES` runs instead: the dashboard (with bench/dash-heap-probe.ts preloaded for its JS
 * heap) attached for MINUTES while a 100-shard job is submitted every 5 s (`--soak-every SECONDS`);
 * RSS and live heap every 30 s, first/last/max and the slope. The probe forces a full collection
 * before each heap sample, so the soak's RSS is lower than an unprobed dashboard's (no GC lag).
 *
 * `--script` uses `script -qfc` for the pseudo-terminal even where tmux is installed.
 *
 * Usage: bun bench/dashboard.ts [seconds-per-phase=20] [--soak MINUTES [--soak-every SECONDS]] [--script]
 */
import { existsSync, readFileSync } from "node:fs";
import { totalmem } from "node:os";
import { join } from "node:path";
import { DASHBOARD_PATH } from "../src/node/control/dash-protocol.ts";
import { DashboardClient } from "../src/tui/client.ts";
import { mnistNetwork } from "./aggregator-e2e.ts";
import { AggregatorDb, Feeder, type JobTiming } from "./dash-feed.ts";
import type { HeapSample } from "./dash-heap-probe.ts";
import { attachDash, type PtyDash } from "./dash-pty.ts";
import { machine, median, ROOT } from "./lib.ts";
import { CpuWindow, rssBytes, slope } from "./proc-stat.ts";

/** The pane: the wide layout (120 columns and more), as issue 6's benchmark asks. */
const COLUMNS = 120;
const ROWS = 40;
/** mnist-8 provider processes behind the aggregator (redundancy 1; ~1,000 shards/s is their ceiling here). */
const PROVIDERS = 2;
/** One submit a second of this many one-image shards: the ~100 shards/s of issue 6. */
const SHARDS_PER_JOB = 100;
const FEED_INTERVAL_MS = 1_000;
/** Jobs submitted before a streaming window opens, so it measures the steady state, not the start. */
const FEED_WARMUP_JOBS = 2;
/** Time the dashboard gets after its first frame before a window opens (module loading, first polls). */
const DASH_SETTLE_MS = 3_000;
/** Calls timed for the snapshot cost, per condition. */
const SNAPSHOT_CALLS = 200;
/**
 * Streaming before the first window, unmeasured: the first jobs pay for JIT warm-up and first
 * connections in every process, which would otherwise land on whichever phase comes first.
 */
const WARMUP_MS = 10_000;
/** Longest wait for the jobs of a streaming phase to finish after the last submit (each takes ~0.1-0.5 s). */
const DRAIN_TIMEOUT_MS = 60_000;
/** Soak: samples every 30 s; by default one 100-shard job every 5 s so every panel keeps changing. */
const SOAK_SAMPLE_MS = 30_000;
const SOAK_JOB_INTERVAL_MS = 5_000;
/** Object types listed as the ones that grew most over the soak. */
const TOP_TYPES = 8;

const MiB = 1024 ** 2;
const args = process.argv.slice(2);
const soakAt = args.indexOf("--soak");
const soakMinutes = soakAt === -1 ? undefined : Number(args[soakAt + 1]);
const everyAt = args.indexOf("--soak-every");
const soakEveryMs = everyAt === -1 ? SOAK_JOB_INTERVAL_MS : Number(args[everyAt + 1]) * 1000;
const valueAt = new Set([soakAt, everyAt].filter((i) => i !== -1).map((i) => i + 1));
const viaScript = args.includes("--script");
const seconds = Number(args.find((a, i) => !a.startsWith("--") && !valueAt.has(i)) ?? 20);
if (!(seconds > 0) || (soakMinutes !== undefined && !(soakMinutes > 0)) || !(soakEveryMs > 0)) {
  console.error("usage: bun bench/dashboard.ts [seconds-per-phase] [--soak MINUTES [--soak-every SECONDS]] [--script]");
  process.exit(2);
}

interface Phase {
  name: string;
  seconds: number;
  nodeCpu: number;
  othersCpu: number;
  dashCpu?: number;
  dashRss?: [number, number];
  frames?: number;
  bytes?: number;
  shardsPerSecond?: number;
  jobs?: JobTiming[];
}

const { net, aggregator, providers } = await mnistNetwork(PROVIDERS);
const client = await net.start("client", ["--bootstrap", aggregator.quic]).catch(async (err: unknown) => {
  await net[Symbol.asyncDispose]();
  throw err;
});
const db = new AggregatorDb(aggregator);
const dir = net.home("bench");
let dash: PtyDash | undefined;
let feeder: Feeder | undefined;

/** Until every job submitted so far is final: the next idle window starts with nothing running. */
async function drained(): Promise<void> {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  while (db.unfinished() > 0) {
    if (Date.now() > deadline) throw new Error(`${db.unfinished()} jobs still unfinished after ${DRAIN_TIMEOUT_MS} ms`);
    await Bun.sleep(100);
  }
}

async function window(name: string, streaming: boolean): Promise<Phase> {
  const others = [...providers, client].map((n) => n.proc.pid);
  const jobsBefore = feeder?.jobIds.length ?? 0;
  if (streaming) {
    feeder?.start();
    while ((feeder?.jobIds.length ?? 0) < jobsBefore + FEED_WARMUP_JOBS) await Bun.sleep(50);
  }
  const pids = [aggregator.proc.pid, ...others, ...(dash ? [dash.pid] : [])];
  const from = Date.now();
  const rss0 = dash ? rssBytes(dash.pid) : 0;
  const frames0 = dash?.frames() ?? 0;
  const bytes0 = dash?.bytes() ?? 0;
  const cpu = new CpuWindow(pids);
  await Bun.sleep(seconds * 1000);
  const { seconds: took, percent } = cpu.read();
  const to = Date.now();
  const phase: Phase = {
    name,
    seconds: took,
    nodeCpu: percent.get(aggregator.proc.pid) ?? 0,
    othersCpu: others.reduce((s, pid) => s + (percent.get(pid) ?? 0), 0),
  };
  if (dash) {
    phase.dashCpu = percent.get(dash.pid);
    phase.dashRss = [rss0, rssBytes(dash.pid)];
    phase.frames = (dash.frames() - frames0) / took;
    phase.bytes = (dash.bytes() - bytes0) / took;
  }
  if (streaming && feeder) {
    await feeder.stop();
    await drained();
    phase.shardsPerSecond = (db.verifiedBetween(from, to) * 1000) / (to - from);
    phase.jobs = db.jobs(feeder.jobIds.slice(jobsBefore));
  }
  console.log(`  ${name}: ${took.toFixed(1)} s`);
  return phase;
}

/** Milliseconds per snapshot call, `SNAPSHOT_CALLS` in a row, and the size of one answer. */
async function snapshotCost(): Promise<{ ms: number[]; bytes: number }> {
  const dc = await DashboardClient.connect(aggregator.home);
  const ms: number[] = [];
  for (let i = 0; i < SNAPSHOT_CALLS; i++) {
    const t = performance.now();
    await dc.snapshot();
    ms.push(performance.now() - t);
  }
  return { ms, bytes: await snapshotBytes() };
}

/** Size of one `GET /v1/dashboard` answer as it crosses the socket. */
async function snapshotBytes(): Promise<number> {
  const dc = await DashboardClient.connect(aggregator.home);
  const raw = await fetch(`http://infernet${DASHBOARD_PATH}`, { unix: dc.path } as RequestInit);
  return (await raw.arrayBuffer()).byteLength;
}

const pct = (x: number | undefined) => (x === undefined ? "-" : `${x.toFixed(2)}%`);
const mib = (x: number) => `${(x / MiB).toFixed(1)}`;
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))] ?? 0;

function jobSummary(jobs: JobTiming[]): string {
  const done = jobs.filter((j) => j.finishedAt !== null);
  const walls = done.map((j) => (j.finishedAt ?? 0) - j.createdAt);
  const shards = done.reduce((s, j) => s + j.shards, 0);
  const span = Math.max(...done.map((j) => j.finishedAt ?? 0)) - Math.min(...done.map((j) => j.createdAt));
  const states = [...new Set(jobs.map((j) => j.state))].join("/");
  return `${jobs.length} jobs (${states}), ${shards} shards, job wall median ${median(walls).toFixed(0)} ms (max ${Math.max(...walls)} ms), first created to last finished ${((shards * 1000) / span).toFixed(0)} shards/s`;
}

async function phases(): Promise<void> {
  feeder = await Feeder.create({
    aggregator,
    client,
    dir,
    shardsPerJob: SHARDS_PER_JOB,
    intervalMs: FEED_INTERVAL_MS,
    name: "dash",
  });
  feeder.start();
  await Bun.sleep(WARMUP_MS);
  await feeder.stop();
  await drained();
  const rows: Phase[] = [];
  rows.push(await window("idle, no dashboard", false));
  rows.push(await window("streaming, no dashboard", true));
  dash = await attachDash({ home: aggregator.home, dir, columns: COLUMNS, rows: ROWS, tmux: !viaScript });
  await Bun.sleep(DASH_SETTLE_MS);
  rows.push(await window("idle, dashboard attached", false));
  rows.push(await window("streaming, dashboard attached", true));
  const idleCost = await snapshotCost();
  feeder.start();
  while (feeder.jobIds.length < FEED_WARMUP_JOBS) await Bun.sleep(50);
  const busyCost = await snapshotCost();
  await feeder.stop();
  await drained();

  console.log(
    `\ndashboard via ${dash.via}, ${COLUMNS}x${ROWS}; ${PROVIDERS} mnist-8 providers + client node; ${seconds} s windows`,
  );
  console.log(
    "\n| phase | shards/s verified | aggregator CPU | other nodes CPU | dash CPU | dash RSS MiB (start -> end) | frames/s | bytes/s to the terminal |",
  );
  console.log(`|${" --- |".repeat(8)}`);
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.shardsPerSecond?.toFixed(1) ?? "-"} | ${pct(r.nodeCpu)} | ${pct(r.othersCpu)} | ${pct(r.dashCpu)} | ${r.dashRss ? `${mib(r.dashRss[0])} -> ${mib(r.dashRss[1])}` : "-"} | ${r.frames?.toFixed(2) ?? "-"} | ${r.bytes?.toFixed(0) ?? "-"} |`,
    );
  }
  const [idle, busy, idleDash, busyDash] = rows;
  if (idle && busy && idleDash && busyDash) {
    console.log(
      `\npolling cost to the aggregator: ${(idleDash.nodeCpu - idle.nodeCpu).toFixed(2)} points of a core idle, ${(busyDash.nodeCpu - busy.nodeCpu).toFixed(2)} streaming (with minus without the dashboard)`,
    );
  }
  for (const r of rows) {
    if (r.dashCpu !== undefined && r.frames) {
      console.log(
        `${r.name}: dash CPU ${((r.dashCpu * 10) / r.frames).toFixed(1)} ms per frame drawn (poll, parse, render, write)`,
      );
    }
  }
  for (const r of rows) if (r.jobs?.length) console.log(`${r.name}: ${jobSummary(r.jobs)}`);
  for (const [name, cost] of [
    ["idle", idleCost],
    ["streaming", busyCost],
  ] as const) {
    console.log(
      `snapshot (${name}): median ${median(cost.ms).toFixed(2)} ms, p90 ${quantile(cost.ms, 0.9).toFixed(2)} ms, max ${Math.max(...cost.ms).toFixed(2)} ms over ${cost.ms.length} calls; ${cost.bytes} bytes`,
    );
  }
  if (feeder.errors.length || feeder.late) {
    console.log(`feeder: ${feeder.errors.length} failed submits, ${feeder.late} late`);
    for (const e of feeder.errors.slice(0, 3)) console.log(`  ${e}`);
  }
}

async function soak(minutes: number): Promise<void> {
  feeder = await Feeder.create({
    aggregator,
    client,
    dir,
    shardsPerJob: SHARDS_PER_JOB,
    intervalMs: soakEveryMs,
    name: "soak",
  });
  const heapFile = join(dir, "dash-heap.jsonl");
  dash = await attachDash({
    home: aggregator.home,
    dir,
    columns: COLUMNS,
    rows: ROWS,
    tmux: !viaScript,
    bunFlags: ["--preload", join(ROOT, "bench/dash-heap-probe.ts")],
    env: { INFERNET_BENCH_HEAP_FILE: heapFile, INFERNET_BENCH_HEAP_MS: String(SOAK_SAMPLE_MS) },
  });
  const attachedAt = Date.now();
  const bytesAtStart = await snapshotBytes();
  feeder.start();
  const cpu = new CpuWindow([dash.pid, aggregator.proc.pid]);
  const frames0 = dash.frames();
  const rss: { x: number; y: number }[] = [];
  const end = attachedAt + minutes * 60_000;
  for (let next = attachedAt; next <= end; next += SOAK_SAMPLE_MS) {
    await Bun.sleep(Math.max(0, next - Date.now()));
    rss.push({ x: (Date.now() - attachedAt) / 60_000, y: rssBytes(dash.pid) / MiB });
    console.log(`  ${rss.at(-1)?.x.toFixed(1)} min: dash RSS ${rss.at(-1)?.y.toFixed(1)} MiB`);
  }
  const { seconds: took, percent } = cpu.read();
  const frames = (dash.frames() - frames0) / took;
  await feeder.stop();
  const heap = existsSync(heapFile)
    ? readFileSync(heapFile, "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as HeapSample)
        .filter((s) => s.at >= attachedAt)
        .map((s) => ({
          x: (s.at - attachedAt) / 60_000,
          y: s.heapUsedBytes / MiB,
          objects: s.objectCount,
          wrapCache: s.inkWrapCache,
          types: s.types,
        }))
    : [];
  const jobs = db.jobs(feeder.jobIds);
  console.log(
    `\nsoak: ${minutes} min, dashboard via ${dash.via}, ${COLUMNS}x${ROWS}, one ${SHARDS_PER_JOB}-shard job every ${soakEveryMs / 1000} s`,
  );
  console.log(
    `dash CPU ${pct(percent.get(dash.pid))}, aggregator CPU ${pct(percent.get(aggregator.proc.pid))}, ${frames.toFixed(2)} frames/s; ${jobSummary(jobs)}`,
  );
  const half = (xs: { x: number; y: number }[]) => xs.filter((p) => p.x >= minutes / 2);
  for (const [name, xs] of [
    ["RSS", rss],
    ["JS heap after full GC", heap],
  ] as const) {
    if (!xs.length) continue;
    const ys = xs.map((p) => p.y);
    console.log(
      `${name}: first ${ys[0]?.toFixed(1)} MiB, last ${ys.at(-1)?.toFixed(1)} MiB, min ${Math.min(...ys).toFixed(1)}, max ${Math.max(...ys).toFixed(1)} MiB; slope ${slope(xs).toFixed(3)} MiB/min over the soak, ${slope(half(xs)).toFixed(3)} MiB/min over its second half (${xs.length} samples)`,
    );
  }
  if (heap.length) {
    console.log(`JS heap series (MiB): ${heap.map((p) => p.y.toFixed(1)).join(" ")}`);
    console.log(`live objects (thousands): ${heap.map((p) => (p.objects / 1000).toFixed(1)).join(" ")}`);
    console.log(`Ink wrapped-text cache entries: ${heap.map((p) => p.wrapCache).join(" ")}`);
    const [first, last] = [heap[0]?.types ?? {}, heap.at(-1)?.types ?? {}];
    const grew = Object.keys(last)
      .map((type) => ({ type, n: (last[type] ?? 0) - (first[type] ?? 0) }))
      .sort((a, b) => b.n - a.n)
      .slice(0, TOP_TYPES);
    console.log(
      `object types that grew most, first to last sample: ${grew.map((g) => `${g.type} +${g.n}`).join(", ")}`,
    );
  }
  console.log(`snapshot: ${bytesAtStart} bytes at the start, ${await snapshotBytes()} at the end`);
  if (feeder.errors.length) console.log(`feeder: ${feeder.errors.length} failed submits: ${feeder.errors[0]}`);
}

console.log(`machine: ${machine()}, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB RAM`);
try {
  if (soakMinutes !== undefined) await soak(soakMinutes);
  else await phases();
} finally {
  await feeder?.stop();
  await dash?.[Symbol.asyncDispose]();
  db.close();
  await net[Symbol.asyncDispose]();
}
