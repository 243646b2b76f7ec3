import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { Store } from "../store/db.ts";
import { JobStore } from "./job-store.ts";

const SHARDS = 20;
const LEASE_MS = 60_000;
const digest = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest("hex");

const SPEC = {
  model: { name: "mnist-8", sha256: "cd".repeat(32) },
  input: { kind: "idx", path: "images.idx" },
  shardCount: SHARDS,
  maxPriceMsat: 10,
  deadlineMs: 2_000_000_000_000,
  idempotencyKey: "crash-job",
};
const PLANS = Array.from({ length: SHARDS }, (_, i) => ({ start: i * 5, count: 5 }));

/**
 * An aggregator that returns half the shards, leaves some leases in flight, and is killed with
 * SIGKILL in the middle of a transaction that leased a shard and recorded its result.
 */
const AGGREGATOR = `
import { Store } from ${JSON.stringify(join(import.meta.dir, "../store/db.ts"))};
import { JobStore } from ${JSON.stringify(join(import.meta.dir, "job-store.ts"))};
const [path, spec, plans] = [process.argv[2], JSON.parse(process.argv[3]), JSON.parse(process.argv[4])];
const store = Store.openFile(path);
const jobs = new JobStore(store);
const digest = (t) => new Bun.CryptoHasher("sha256").update(t).digest("hex");
const { job } = jobs.submit(spec, plans);
const shards = jobs.shards(job.id);
for (const s of shards.slice(0, 10)) {
  for (const peer of ["peerA", "peerB"]) {
    const a = jobs.lease(s.id, peer, ${LEASE_MS});
    jobs.recordResult(a.id, { sha256: digest("r" + s.index), bytes: Buffer.from("r" + s.index) });
  }
}
for (const s of shards.slice(10, 13)) jobs.start(jobs.lease(s.id, "peerA", ${LEASE_MS}).id);
process.stdout.write("committed\\n");
store.db.transaction(() => {
  const a = jobs.lease(shards[13].id, "peerB", ${LEASE_MS});
  jobs.recordResult(a.id, { sha256: digest("r13"), bytes: Buffer.from("r13") });
  process.kill(process.pid, "SIGKILL");
})();
process.stdout.write("not reached\\n");
`;

describe("job store crash safety", () => {
  test("after SIGKILL mid-transaction a second Store finds every committed change and nothing else", async () => {
    using dir = tempDir();
    const path = join(dir.path, "infernet.db");
    const script = join(dir.path, "aggregator.ts");
    await Bun.write(script, AGGREGATOR);
    const proc = Bun.spawn([process.execPath, script, path, JSON.stringify(SPEC), JSON.stringify(PLANS)], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = [
      await new Response(proc.stdout).text(),
      await new Response(proc.stderr).text(),
      await proc.exited,
    ];
    expect({ out, err: err.includes("error") ? err : "" }).toEqual({ out: "committed\n", err: "" });
    expect(proc.signalCode ?? code).toBe("SIGKILL");

    let now = Date.now();
    using store = Store.openFile(path);
    const jobs = new JobStore(store, { now: () => now });
    const [job] = jobs.unfinishedJobs();
    expect(job).toMatchObject({ state: "running", shardCount: SHARDS, shardsReturned: 10 });
    // A client retrying its submission finds the same job.
    expect(jobs.submit(SPEC, PLANS)).toEqual({ job: job!, created: false });
    const shards = jobs.shards(job!.id);
    expect(shards.map((s) => s.state)).toEqual([
      ...Array(10).fill("returned"),
      ...Array(3).fill("running"),
      ...Array(7).fill("queued"),
    ]);
    expect(jobs.assignments(shards[13]!.id)).toEqual([]);
    expect(jobs.inFlight(job!.id).map((a) => [a.provider, a.state])).toEqual(Array(3).fill(["peerA", "running"]));

    // A retried result from before the crash counts once.
    const first = jobs.assignments(shards[0]!.id)[0]!;
    expect(jobs.recordResult(first.id, { sha256: digest("r0"), bytes: Buffer.from("r0") }).duplicate).toBe(true);

    // The restarted aggregator re-leases what was in flight once those leases run out, and finishes.
    now += LEASE_MS;
    expect(jobs.expireLeases(now)).toHaveLength(3);
    for (const peer of ["peerC", "peerD"]) {
      for (let a = jobs.leaseNext(job!.id, peer, LEASE_MS); a; a = jobs.leaseNext(job!.id, peer, LEASE_MS)) {
        const index = jobs.shard(a.shardId).index;
        jobs.recordResult(a.id, { sha256: digest(`r${index}`), path: `/results/${index}` });
      }
    }
    for (const s of jobs.shards(job!.id)) jobs.verifyShard(s.id, digest(`r${s.index}`));
    expect(jobs.job(job!.id).state).toBe("verified");
    const counts = store.db
      .query<{ shard_id: number; n: number }, []>(
        "SELECT shard_id, count(*) AS n FROM assignments WHERE state = 'verified' GROUP BY shard_id",
      )
      .all();
    expect(counts.map((c) => c.n)).toEqual(Array(SHARDS).fill(2));
    expect(jobs.report(job!.id).retries).toBe(3);
  });

  test("a Store abandoned without closing leaves its work to a second Store on the same file", () => {
    using dir = tempDir();
    const path = join(dir.path, "infernet.db");
    const abandoned = new JobStore(Store.openFile(path));
    const { job } = abandoned.submit(SPEC, PLANS);
    const a = abandoned.leaseNext(job.id, "peerA", LEASE_MS)!;
    using second = Store.openFile(path);
    const jobs = new JobStore(second);
    expect(jobs.assignment(a.id)).toMatchObject({ state: "leased", provider: "peerA" });
    expect(jobs.leaseNext(job.id, "peerA", LEASE_MS)!.shardId).not.toBe(a.shardId);
    // Both see each other's writes; the one-copy-per-provider rule holds across them.
    expect(() => abandoned.lease(a.shardId, "peerA", LEASE_MS)).toThrow(/already holds a copy/);
    expect(jobs.progress(job.id).copies.leased).toBe(2);
  });
});
