import { expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { Store } from "../store/db.ts";
import { snapshotJob } from "./job-snapshot.ts";
import { JobStore } from "./job-store.ts";
import { MAX_SPECULATIVE_COPIES, MIN_LEASE_MS, planAssignments } from "./scheduler.ts";
import { MODEL_SHA, provider, T0 } from "./scheduler-fixtures.ts";

/**
 * The planner driving a real JobStore on a SQLite file through a whole job, over a simulated clock:
 * providers compute their leased copies one after another at their own speed; one vanishes mid-way,
 * its leases expire and its shards are planned elsewhere.
 */

const SHARDS = 200;
const RECORDS_PER_SHARD = 10;
const REDUNDANCY = 2;
/** Milliseconds one shard takes on each provider (10 records at the announced units per second). */
const SPEEDS = { a: 20, b: 25, c: 40 } as const;
type Peer = keyof typeof SPEEDS;
const VANISHING: Peer = "b";
const VANISH_AT = T0 + 1_500;
const TICK_MS = 100;
const MAX_STEPS = 20_000;

const digest = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");

interface Work {
  assignmentId: string;
  index: number;
  finish: number;
}

interface Outcome {
  jobs: JobStore;
  jobId: string;
  endedAt: number;
  leased: number;
  speculative: number;
}

/** Runs the job to the end (or MAX_STEPS), speculative copies leased through `leaseExtra` or not planned. */
function simulate(store: Store, speculate: boolean): Outcome {
  const clock = { t: T0 };
  let ids = 0;
  const jobs = new JobStore(store, { now: () => clock.t, newId: () => `a-${++ids}` });
  const spec = {
    model: { name: "mnist-8", sha256: MODEL_SHA },
    input: { kind: "idx", path: "t10k-images-idx3-ubyte.gz" },
    shardSize: RECORDS_PER_SHARD,
    redundancy: REDUNDANCY,
    maxPriceMsat: 10_000_000,
    deadlineMs: T0 + 3_600_000,
    idempotencyKey: "sim-1",
  };
  const ranges = Array.from({ length: SHARDS }, (_, i) => ({ start: i * RECORDS_PER_SHARD, count: RECORDS_PER_SHARD }));
  const { job } = jobs.submit(spec, ranges);

  const records = (Object.keys(SPEEDS) as Peer[]).map((p) =>
    provider(p, { tps: (RECORDS_PER_SHARD * 1000) / SPEEDS[p], expiresAt: T0 + 3_600_000 }),
  );
  const queues = new Map<Peer, Work[]>(records.map((r) => [r.peerId as Peer, []]));
  const busyUntil = new Map<Peer, number>();
  let speculative = 0;
  let leased = 0;

  for (let step = 0; step < MAX_STEPS && jobs.job(job.id).state !== "verified"; step++) {
    jobs.expireLeases(clock.t);
    if (clock.t >= VANISH_AT) queues.set(VANISHING, []);

    // Providers hand back what they finished; a result for a lost lease is refused, not counted.
    for (const [peer, queue] of queues) {
      const due = queue.filter((w) => w.finish <= clock.t);
      queues.set(
        peer,
        queue.filter((w) => w.finish > clock.t),
      );
      jobs.recordResults(
        due.map((w) => {
          const bytes = new TextEncoder().encode(`labels of shard ${w.index}`);
          return { assignmentId: w.assignmentId, result: { sha256: digest(bytes), bytes } };
        }),
      );
    }
    for (const shard of jobs.shards(job.id)) {
      if (shard.state !== "returned") continue;
      const sha = jobs.assignments(shard.id).find((a) => a.state === "returned")?.resultSha256 as string;
      jobs.verifyShard(shard.id, sha);
    }

    const announced = clock.t >= VANISH_AT ? records.filter((r) => r.peerId !== VANISHING) : records;
    const plan = planAssignments({ jobs: [snapshotJob(jobs, job.id)] }, announced, clock.t, { speculate });
    expect(plan.refused).toEqual([]);
    for (const l of plan.leases) {
      const a = l.speculative
        ? jobs.leaseExtra(l.shardId, l.provider, l.leaseMs, MAX_SPECULATIVE_COPIES)
        : jobs.lease(l.shardId, l.provider, l.leaseMs);
      const peer = l.provider as Peer;
      const finish = Math.max(clock.t, busyUntil.get(peer) ?? 0) + SPEEDS[peer];
      busyUntil.set(peer, finish);
      queues.get(peer)?.push({ assignmentId: a.id, index: l.shardIndex, finish });
      leased++;
      if (l.speculative) speculative++;
    }

    const next = Math.min(...[...queues.values()].flatMap((q) => q.map((w) => w.finish)), clock.t + TICK_MS);
    clock.t = Math.max(next, clock.t + 1);
  }

  return { jobs, jobId: job.id, endedAt: clock.t, leased, speculative };
}

/** Every shard verified by exactly `REDUNDANCY` distinct providers; returns the vanished provider's lost copies. */
function checkComplete({ jobs, jobId }: Outcome): { expired: number; cancelled: number } {
  const final = jobs.job(jobId);
  expect(final.state).toBe("verified");
  expect(final.shardsVerified).toBe(SHARDS);
  const report = jobs.report(jobId);
  let expired = 0;
  let cancelled = 0;
  for (const shard of report.shards) {
    const verified = shard.copies.filter((c) => c.state === "verified");
    expect(verified).toHaveLength(REDUNDANCY);
    expect(new Set(verified.map((c) => c.provider)).size).toBe(REDUNDANCY);
    for (const c of verified) if (c.provider === VANISHING) expect(c.returnedAt as number).toBeLessThan(VANISH_AT);
    const lost = shard.copies.filter((c) => c.provider === VANISHING && c.state !== "verified");
    expired += lost.filter((c) => c.reason === "lease expired").length;
    cancelled += lost.filter((c) => c.reason === "shard already verified").length;
  }
  // Work went to all three while they lived, the fastest doing the most.
  const done = Object.fromEntries(report.providers.map((p) => [p.provider, p.copies.verified]));
  expect(done.a).toBeGreaterThan(done.c as number);
  expect(done[VANISHING]).toBeGreaterThan(0);
  return { expired, cancelled };
}

test("a 200-shard job runs to the end through the planner, with one provider lost mid-way", () => {
  using dir = tempDir();
  using store = Store.openFile(join(dir.path, "jobs.db"));
  const run = simulate(store, false);
  const { expired, cancelled } = checkComplete(run);
  // The vanished provider held a full window when it went; each copy expired and was done elsewhere.
  expect(expired).toBeGreaterThan(0);
  expect(cancelled).toBe(0);
  expect(run.jobs.report(run.jobId).retries).toBe(expired);
  expect(run.leased).toBe(SHARDS * REDUNDANCY + expired);
  expect(run.speculative).toBe(0);
  // Its shards waited for the lease to run out.
  expect(run.endedAt).toBeGreaterThan(VANISH_AT + MIN_LEASE_MS);
});

test("near the end, speculative copies redo the lost provider's shards before its leases expire", () => {
  using dir = tempDir();
  using store = Store.openFile(join(dir.path, "jobs.db"));
  const run = simulate(store, true);
  const { expired, cancelled } = checkComplete(run);
  expect(run.speculative).toBeGreaterThan(0);
  // Each lost copy was either overtaken by a speculative one (then cancelled at verification) or expired.
  expect(expired + cancelled).toBe(run.leased - SHARDS * REDUNDANCY);
  expect(run.endedAt).toBeLessThan(VANISH_AT + MIN_LEASE_MS);
});
