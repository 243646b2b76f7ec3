/**
 * Provider loss mid-job: an aggregator and 3 mnist-8 providers (real processes on 127.0.0.1), the
 * 10,000 MNIST test images submitted in shards of 100, redundancy 1. Once a quarter of the shards are
 * verified, the provider holding the most copies in flight (read from the aggregator's SQLite,
 * read-only) is SIGKILLed: no goodbye, so the aggregator can only notice its silence
 * (coordinator.ts QUIET_TIMEOUT_MS, the lease timeout for a vanished provider). From the job's report,
 * for each copy the victim held at the kill: kill to the copy given up (endedAt), kill to the shard
 * leased to another provider, kill to that copy started there; and kill to the job's verification.
 * Target (issue 4): leased elsewhere within 2 s plus the configured timeout.
 * Usage: bun bench/aggregator-loss.ts [runs=3] [killAt=0.25]
 */
import { Database } from "bun:sqlite";
import { join } from "node:path";
import type { CopyReport } from "../src/jobs/job-report.ts";
import { QUIET_TIMEOUT_MS, TICK_MS } from "../src/node/aggregator/coordinator.ts";
import type { NodeProcess } from "../test/helpers/network.ts";
import { IMAGES, mnistNetwork, reportOf, submitArgs } from "./aggregator-e2e.ts";
import { BUN, CLI, MIRROR, machine, median } from "./lib.ts";

/** Small shards, so the job is still running a few seconds after the kill. */
const LOSS_SHARD_SIZE = 100;
/** One copy per shard: a lost copy is then the shard's only one, and its replacement is unambiguous. */
const REDUNDANCY = 1;
/** Fraction of shards verified before the kill (default: the job well under way, most of it still ahead). */
const KILL_AT = Number(process.argv[3] ?? 0.25);

/** The provider with the most copies in flight for the job, and how many. */
function busiest(aggregator: NodeProcess, jobId: string): { provider: string; n: number } | undefined {
  const db = new Database(join(aggregator.home, "infernet.db"), { readonly: true });
  try {
    return (
      db
        .query<{ provider: string; n: number }, [string]>(
          `SELECT provider, count(*) AS n FROM assignments WHERE job_id = ? AND state IN ('leased', 'running')
           GROUP BY provider ORDER BY n DESC LIMIT 1`,
        )
        .get(jobId) ?? undefined
    );
  } finally {
    db.close();
  }
}

interface LossRun {
  lost: number;
  endedMs: number[];
  leasedMs: number[];
  startedMs: number[];
  finishedMs: number;
  reasons: Set<string>;
  /** Lost copies whose shard already had a speculative copy elsewhere at the kill. */
  covered: number;
}

async function lossRun(run: number): Promise<LossRun> {
  const { net, aggregator } = await mnistNetwork(3);
  try {
    const home = net.home(`client-${run}`);
    const proc = Bun.spawn(
      [BUN, CLI, ...submitArgs(aggregator, `loss-${run}`, join(home, "out.jsonl"), REDUNDANCY, LOSS_SHARD_SIZE)],
      {
        env: { ...process.env, INFERNET_HOME: home, INFERNET_MODEL_MIRROR: MIRROR, INFERNET_MDNS: "false" },
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const stderr = new Response(proc.stderr).text();
    let stdout = "";
    let killAt: number | undefined;
    let victim: string | undefined;
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) {
      stdout += decoder.decode(chunk, { stream: true });
      if (killAt !== undefined) continue;
      const last = stdout.trimEnd().split("\n").at(-1) ?? "";
      if (!last.includes('"progress"')) continue;
      const { job } = JSON.parse(last) as { job: { id: string; shardCount: number; shardsVerified: number } };
      if (job.shardsVerified < job.shardCount * KILL_AT) continue;
      const target = busiest(aggregator, job.id);
      const node = target && net.byPeerId(target.provider);
      if (!node) continue;
      node.proc.kill("SIGKILL");
      killAt = Date.now();
      victim = target.provider;
    }
    const code = await proc.exited;
    if (code !== 0) throw new Error(`submit exited ${code}: ${(await stderr).slice(-2000)}`);
    if (killAt === undefined || victim === undefined) throw new Error("the job ended before a provider was killed");
    const report = reportOf(stdout);
    if (report.job.state !== "verified") throw new Error(`job ${report.job.id} ${report.job.state}`);
    const lines = (await Bun.file(join(home, "out.jsonl")).text()).trim().split("\n").length;
    if (lines !== IMAGES) throw new Error(`${lines} output lines`);
    const kill = killAt;
    const result: LossRun = {
      lost: 0,
      endedMs: [],
      leasedMs: [],
      startedMs: [],
      finishedMs: 0,
      reasons: new Set(),
      covered: 0,
    };
    result.finishedMs = (report.job.finishedAt ?? Number.NaN) - kill;
    for (const shard of report.shards) {
      const held = shard.copies.find((c) => c.provider === victim && c.leasedAt <= kill && c.returnedAt === undefined);
      if (!held) continue;
      result.lost++;
      if (held.endedAt !== undefined) result.endedMs.push(held.endedAt - kill);
      if (held.reason) result.reasons.add(held.reason.replace(/12D3KooW\w+/g, "<peer>"));
      // The copy that took its place: the first on another provider still to return at the kill (a
      // speculative copy leased before the kill counts as 0 ms: the shard was already running elsewhere).
      const next = shard.copies
        .filter((c: CopyReport) => c.provider !== victim && (c.returnedAt === undefined || c.returnedAt > kill))
        .sort((a, b) => a.leasedAt - b.leasedAt)[0];
      if (next && next.leasedAt <= kill) result.covered++;
      if (next) {
        result.leasedMs.push(Math.max(0, next.leasedAt - kill));
        if (next.startedAt !== undefined) result.startedMs.push(Math.max(0, next.startedAt - kill));
      }
    }
    return result;
  } finally {
    await net[Symbol.asyncDispose]();
  }
}

const runs = Number(process.argv[2] ?? 3);
console.log(`machine: ${machine()}`);
console.log(
  `mnist-8, ${IMAGES} images in shards of ${LOSS_SHARD_SIZE}, redundancy ${REDUNDANCY}, 3 providers; SIGKILL of the busiest at ${KILL_AT * 100}% of shards verified`,
);
console.log(
  `QUIET_TIMEOUT_MS ${QUIET_TIMEOUT_MS}, TICK_MS ${TICK_MS}; target: leased elsewhere < 2 s + ${QUIET_TIMEOUT_MS} ms`,
);
const fmt = (xs: number[]) =>
  xs.length === 0 ? "none" : `median ${median(xs).toFixed(0)} ms, max ${Math.max(...xs).toFixed(0)} ms`;
const all: LossRun[] = [];
for (let i = 0; i < runs; i++) {
  const r = await lossRun(i);
  all.push(r);
  console.log(
    `run ${i + 1}: ${r.lost} copies lost with the provider (${r.leasedMs.length} leased elsewhere, ${r.covered} already running elsewhere)`,
  );
  console.log(`  kill -> copy given up:        ${fmt(r.endedMs)}`);
  console.log(`  kill -> leased elsewhere:     ${fmt(r.leasedMs)}`);
  console.log(`  kill -> started elsewhere:    ${fmt(r.startedMs)}`);
  console.log(`  kill -> job verified:         ${r.finishedMs.toFixed(0)} ms`);
  console.log(`  why the copies ended: ${[...r.reasons].join("; ")}`);
}
const flat = (f: (r: LossRun) => number[]) => all.flatMap(f);
console.log(`all ${runs} runs (${flat((r) => r.leasedMs).length} lost copies):`);
console.log(`  kill -> copy given up:        ${fmt(flat((r) => r.endedMs))}`);
console.log(`  kill -> leased elsewhere:     ${fmt(flat((r) => r.leasedMs))}`);
console.log(`  kill -> started elsewhere:    ${fmt(flat((r) => r.startedMs))}`);
console.log(`  kill -> job verified:         ${fmt(all.map((r) => r.finishedMs))}`);
