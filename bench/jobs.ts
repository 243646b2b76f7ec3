/**
 * Job-store capacity: a job of N tiny shards, redundancy 2, three providers, on a real SQLite
 * file. Run twice: one transaction per lease, start and result; then windows (a provider's
 * in-flight window leased in one transaction, its results recorded in one).
 * Usage: bun bench/jobs.ts [shards=10000] [window=32]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JobStore } from "../src/jobs/job-store.ts";
import { Store } from "../src/store/db.ts";
import { machine } from "./lib.ts";

const shards = Number(process.argv[2] ?? 10_000);
const PROVIDERS = ["peerA", "peerB", "peerC"];
const LEASE_MS = 60_000;
const window = Number(process.argv[3] ?? 32);
const result = Buffer.from('{"label":7}\n');
const sha256 = new Bun.CryptoHasher("sha256").update(result).digest("hex");
const plans = Array.from({ length: shards }, (_, i) => ({ start: i, count: 1 }));
const perS = (n: number, ms: number) => ((n * 1000) / ms).toFixed(0);

/** Leases, returns and verifies every copy; returns the copy count and the phase times. */
function run(jobs: JobStore, key: string, batch: number) {
  const spec = {
    model: { name: "mnist-8", sha256: "00".repeat(32) },
    input: { kind: "idx", path: "t10k-images-idx3-ubyte.gz" },
    shardSize: 1,
    maxPriceMsat: 1_000_000,
    deadlineMs: Date.now() + 3_600_000,
    idempotencyKey: key,
  };
  let t = performance.now();
  const { job } = jobs.submit(spec, plans);
  const submitMs = performance.now() - t;
  t = performance.now();
  let copies = 0;
  for (let progress = true; progress; ) {
    progress = false;
    for (const provider of PROVIDERS) {
      if (batch === 1) {
        const a = jobs.leaseNext(job.id, provider, LEASE_MS);
        if (!a) continue;
        jobs.start(a.id);
        jobs.recordResult(a.id, { sha256, bytes: result });
        copies++;
      } else {
        const leased = jobs.leaseMany(job.id, provider, batch, LEASE_MS);
        if (leased.length === 0) continue;
        jobs.recordResults(leased.map((a) => ({ assignmentId: a.id, result: { sha256, bytes: result } })));
        copies += leased.length;
      }
      progress = true;
    }
  }
  const computeMs = performance.now() - t;
  t = performance.now();
  for (const s of jobs.shards(job.id)) jobs.verifyShard(s.id, sha256);
  const verifyMs = performance.now() - t;
  return { state: jobs.job(job.id).state, submitMs, copies, computeMs, verifyMs };
}

const dir = mkdtempSync(join(tmpdir(), "infernet-bench-jobs-"));
try {
  using store = Store.openFile(join(dir, "infernet.db"));
  const jobs = new JobStore(store);
  console.log(`machine: ${machine()}`);
  console.log(`job: ${shards} shards x redundancy 2 over ${PROVIDERS.length} providers, SQLite file, WAL`);
  for (const batch of [1, window]) {
    const r = run(jobs, `bench-${batch}`, batch);
    const how =
      batch === 1 ? "lease, start, result: 3 transactions per copy" : `windows of ${batch}: 2 transactions per window`;
    console.log(`${how} -> ${r.state}`);
    console.log(`  submit (one transaction): ${r.submitMs.toFixed(0)} ms (${perS(shards, r.submitMs)} shards/s)`);
    console.log(
      `  ${r.copies} copies leased and returned in ${r.computeMs.toFixed(0)} ms = ${perS(r.copies, r.computeMs)} copies/s` +
        ` (${perS(r.copies / 2, r.computeMs)} shards/s)`,
    );
    console.log(`  verify, one transaction per shard: ${perS(shards, r.verifyMs)} shards/s`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
