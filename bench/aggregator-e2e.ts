/**
 * End-to-end MNIST through a real aggregator: `infernet start --aggregator` plus 1, 2 and 3
 * `infernet start --provider --models mnist-8` processes on 127.0.0.1, and `infernet submit` of the
 * 10,000 test images in 20 shards of 500, redundancy 1 and 2, against `infernet run mnist-8` over the
 * same images in one local process, in the same run (a local run before each round of submits).
 * Both sides are timed as a user sees them, process start to exit. From each job's report:
 *  - job wall: the aggregator's createdAt to finishedAt (upload done to verified);
 *  - copy time: the report's wallMs summed over returned copies (the aggregator's startedAt to
 *    returnedAt, so it includes the result's transfer);
 *  - engine time: what the providers themselves reported as compute (assignments.compute_ms in the
 *    aggregator's SQLite, read-only; the report does not carry it);
 *  - coordination overhead per shard = (job wall - copy time / providers) / shards: the wall time not
 *    spent computing, with the providers' copy time counted as if they worked side by side;
 *  - outside the job: submit wall - job wall (node start, dialling, splitting, upload, output fetch).
 * Usage: bun bench/aggregator-e2e.ts [rounds=3]
 */
import { Database } from "bun:sqlite";
import { join } from "node:path";
import type { JobReport } from "../src/jobs/job-report.ts";
import { type NodeProcess, TestNetwork } from "../test/helpers/network.ts";
import { BUN, CLI, MIRROR, machine, median, spawnTimed } from "./lib.ts";

export const IMAGES_FILE = join(MIRROR, "../data/mnist/t10k-images-idx3-ubyte.gz");
export const IMAGES = 10_000;
export const SHARD_SIZE = 500;
const ENV = { INFERNET_MODEL_MIRROR: MIRROR, INFERNET_MDNS: "false", INFERNET_LOG: "info" };

/** An aggregator and `providers` mnist-8 providers, each its own process, all discoverable. */
export async function mnistNetwork(
  providers: number,
): Promise<{ net: TestNetwork; aggregator: NodeProcess; providers: NodeProcess[] }> {
  const net = new TestNetwork();
  try {
    const aggregator = await net.start("aggregator", ["--aggregator", "--fee", "1%"]);
    const started = await Promise.all(
      Array.from({ length: providers }, (_, i) =>
        net.start(`provider-${i + 1}`, ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic]),
      ),
    );
    await net.discoverable(aggregator.quic, "mnist-8", started);
    return { net, aggregator, providers: started };
  } catch (err) {
    await net[Symbol.asyncDispose]();
    throw err;
  }
}

/** The `infernet submit` arguments (after the binary) for one job; a fresh key makes it a new job. */
export function submitArgs(
  aggregator: NodeProcess,
  key: string,
  output: string,
  redundancy: number,
  shardSize = SHARD_SIZE,
) {
  return [
    "submit",
    "--model",
    "mnist-8",
    "--inputs",
    IMAGES_FILE,
    "--shard-size",
    String(shardSize),
    "--redundancy",
    String(redundancy),
    "--aggregator",
    aggregator.quic,
    "--bootstrap",
    aggregator.quic,
    "--no-mdns",
    "--json",
    "--key",
    key,
    "--output",
    output,
  ];
}

/** The report that closes a `submit --json` run's stdout. */
export function reportOf(stdout: string): JobReport {
  const last = stdout.trim().split("\n").at(-1) ?? "";
  const event = JSON.parse(last) as { event: string; report?: JobReport };
  if (event.event !== "report" || !event.report) throw new Error(`submit ended without a report: ${last}`);
  return event.report;
}

/** Milliseconds the providers' engines reported for the job's copies (from the aggregator's database). */
export function engineMs(aggregator: NodeProcess, jobId: string): number {
  const db = new Database(join(aggregator.home, "infernet.db"), { readonly: true });
  try {
    const row = db
      .query<{ ms: number | null }, [string]>("SELECT sum(compute_ms) AS ms FROM assignments WHERE job_id = ?")
      .get(jobId);
    return row?.ms ?? 0;
  } finally {
    db.close();
  }
}

interface Sample {
  wallMs: number;
  jobMs: number;
  copyMs: number;
  engineMs: number;
  copies: number;
  retries: number;
}

async function submitOnce(
  net: TestNetwork,
  aggregator: NodeProcess,
  redundancy: number,
  key: string,
  providers: number,
): Promise<Sample> {
  const home = net.home(`client-${key}`);
  const run = await spawnTimed([BUN, CLI, ...submitArgs(aggregator, key, join(home, "out.jsonl"), redundancy)], {
    ...ENV,
    INFERNET_HOME: home,
  });
  if (run.code !== 0) throw new Error(`submit exited ${run.code}: ${run.stderr.slice(-2000)}`);
  const report = reportOf(run.stdout);
  const lines = (await Bun.file(join(home, "out.jsonl")).text()).trim().split("\n").length;
  if (report.job.state !== "verified" || lines !== IMAGES) {
    throw new Error(`job ${report.job.id}: ${report.job.state}, ${lines} output lines`);
  }
  const copies = report.shards.flatMap((s) => s.copies).filter((c) => c.wallMs !== undefined);
  if (new Set(copies.map((c) => c.provider)).size > providers) throw new Error("more providers than started");
  return {
    wallMs: run.wallMs,
    jobMs: report.wallMs,
    copyMs: copies.reduce((n, c) => n + (c.wallMs ?? 0), 0),
    engineMs: engineMs(aggregator, report.job.id),
    copies: copies.length,
    retries: report.retries,
  };
}

async function localRun(home: string): Promise<number> {
  const run = await spawnTimed([BUN, CLI, "run", "mnist-8", "--input", IMAGES_FILE], { ...ENV, INFERNET_HOME: home });
  if (run.code !== 0) throw new Error(`infernet run exited ${run.code}: ${run.stderr.slice(-2000)}`);
  const lines = run.stdout.trim().split("\n").length;
  if (lines !== IMAGES) throw new Error(`infernet run printed ${lines} lines`);
  return run.wallMs;
}

async function main(): Promise<void> {
  const rounds = Number(process.argv[2] ?? 3);
  const rows: { rate: number; cells: string[] }[] = [];
  const local: number[] = [];
  const shards = IMAGES / SHARD_SIZE;
  console.log(`machine: ${machine()}`);
  console.log(
    `mnist-8, ${IMAGES} images, ${shards} shards of ${SHARD_SIZE}, ${rounds} rounds per configuration (medians)`,
  );
  for (const n of [1, 2, 3]) {
    const { net, aggregator } = await mnistNetwork(n);
    try {
      const samples: Record<number, Sample[]> = { 1: [], 2: [] };
      const redundancies = [1, 2].filter((r) => r <= n);
      for (let round = 0; round < rounds; round++) {
        local.push(await localRun(net.home(`local-${round}`)));
        for (const r of redundancies) samples[r]?.push(await submitOnce(net, aggregator, r, `n${n}-r${r}-${round}`, n));
      }
      for (const r of redundancies) {
        const s = samples[r] ?? [];
        const m = (f: (x: Sample) => number) => median(s.map(f));
        const overhead = (f: (x: Sample) => number) => median(s.map((x) => (x.jobMs - f(x) / n) / shards));
        const rate = m((x) => (IMAGES * 1000) / x.wallMs);
        rows.push({
          rate,
          cells: [
            `${n}`,
            `${r}`,
            `${rate.toFixed(0)}`,
            `${m((x) => (IMAGES * 1000) / x.jobMs).toFixed(0)}`,
            `${(m((x) => x.wallMs) / 1000).toFixed(2)} s`,
            `${(m((x) => x.jobMs) / 1000).toFixed(2)} s`,
            `${(m((x) => x.copyMs) / 1000).toFixed(2)} s`,
            `${(m((x) => x.engineMs) / 1000).toFixed(2)} s`,
            `${overhead((x) => x.copyMs).toFixed(0)} ms`,
            `${overhead((x) => x.engineMs).toFixed(0)} ms`,
            `${(m((x) => x.wallMs - x.jobMs) / 1000).toFixed(2)} s`,
            `${m((x) => x.copies)}/${m((x) => x.retries)}`,
            s.map((x) => (x.wallMs / 1000).toFixed(2)).join(" "),
          ],
        });
        console.log(`  done: ${n} provider(s), redundancy ${r}`);
      }
    } finally {
      await net[Symbol.asyncDispose]();
    }
  }
  const localMs = median(local);
  const localRate = (IMAGES * 1000) / localMs;
  console.log(
    `\nlocal: infernet run mnist-8 --input ... : ${(localMs / 1000).toFixed(2)} s wall, ${localRate.toFixed(0)} images/s (median of ${local.length}; ${local.map((x) => (x / 1000).toFixed(2)).join(" ")} s)`,
  );
  console.log(
    "\n| providers | redundancy | images/s (submit wall) | ratio to local | images/s (job wall) | submit wall | job wall | copy time (report) | engine time | overhead/shard (copy) | overhead/shard (engine) | outside the job | copies/retries | submit walls |",
  );
  console.log(`|${" --- |".repeat(14)}`);
  for (const { rate, cells } of rows) {
    cells.splice(3, 0, (rate / localRate).toFixed(3));
    console.log(`| ${cells.join(" | ")} |`);
  }
}

if (import.meta.main) await main();
