import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { Store } from "../store/db.ts";
import { JobStore } from "./job-store.ts";
import type { AssignmentRecord } from "./rows.ts";
import type { JobSpecInput, ShardRange } from "./spec.ts";

const SHA = "ab".repeat(32);
const LEASE_MS = 1_000;

function spec(over: Partial<JobSpecInput> = {}): JobSpecInput {
  return {
    model: { name: "mnist-8", sha256: SHA },
    input: { kind: "idx", path: "t10k-images-idx3-ubyte.gz" },
    shardSize: 10,
    maxPriceMsat: 1_000,
    deadlineMs: 2_000_000_000_000,
    idempotencyKey: "job-1",
    ...over,
  };
}

function plans(n: number, size = 10): ShardRange[] {
  return Array.from({ length: n }, (_, i) => ({ start: i * size, count: size }));
}

const digest = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest("hex");

/** A store on a real file with a clock the test moves by hand. */
function open(dir: string, clock = { t: 1_000_000 }) {
  const store = Store.openFile(join(dir, "jobs.db"));
  let n = 0;
  const jobs = new JobStore(store, { now: () => clock.t, newId: () => `id-${++n}-${clock.t}` });
  return { store, jobs, clock, [Symbol.dispose]: () => store.close() };
}

function errorOf(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  return undefined;
}

describe("job store", () => {
  test("a job is stored with its shards queued; the same key returns it, another spec under it is refused", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const first = s.jobs.submit(spec(), plans(3));
    expect(first.created).toBe(true);
    expect(first.job.state).toBe("queued");
    expect(first.job.spec.redundancy).toBe(2);
    expect(s.jobs.shards(first.job.id).map((x) => [x.index, x.start, x.state, x.missing])).toEqual([
      [0, 0, "queued", 2],
      [1, 10, "queued", 2],
      [2, 20, "queued", 2],
    ]);
    // Keys in another order are the same spec.
    const again = s.jobs.submit({ ...spec(), model: { sha256: SHA, name: "mnist-8" } }, plans(3));
    expect(again).toEqual({ job: first.job, created: false });
    expect(s.store.db.query("SELECT count(*) AS n FROM shards").get()).toEqual({ n: 3 });
    expect(errorOf(() => s.jobs.submit(spec({ maxPriceMsat: 5 }), plans(3)))?.name).toBe("IdempotencyConflictError");
    expect(errorOf(() => s.jobs.submit(spec({ redundancy: 0 }), plans(3)))?.name).toBe("InvalidInputError");
    expect(errorOf(() => s.jobs.submit(spec({ shardCount: 3 }), plans(3)))?.message).toMatch(/not both/);
    expect(errorOf(() => s.jobs.submit(spec({ idempotencyKey: "k2" }), []))?.name).toBe("InvalidInputError");
  });

  test("redundancy 2: two providers each hold one copy, never two on one; verified shards finish the job", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec(), plans(2));
    const [shard0, shard1] = s.jobs.shards(job.id);
    const a = s.jobs.lease(shard0!.id, "peerA", LEASE_MS);
    expect(s.jobs.job(job.id).state).toBe("running");
    expect(s.jobs.shard(shard0!.id).state).toBe("leased");
    expect(errorOf(() => s.jobs.lease(shard0!.id, "peerA", LEASE_MS))?.name).toBe("LeaseRefusedError");
    const b = s.jobs.lease(shard0!.id, "peerB", LEASE_MS);
    expect(errorOf(() => s.jobs.lease(shard0!.id, "peerC", LEASE_MS))?.message).toMatch(/all its copies/);
    // peerA's next shard is shard 1, which it holds nothing of.
    expect(s.jobs.leasableShards(job.id, "peerA", 10).map((x) => x.index)).toEqual([1]);
    expect(s.jobs.leasableShards(job.id, "peerC", 10).map((x) => x.index)).toEqual([1]);

    s.jobs.start(a.id);
    expect(s.jobs.shard(shard0!.id).state).toBe("running");
    s.jobs.recordResult(a.id, { sha256: digest("r0"), bytes: Buffer.from("r0") });
    expect(s.jobs.shard(shard0!.id).state).toBe("leased");
    s.jobs.recordResult(b.id, { sha256: digest("r0"), path: "/results/0.jsonl" });
    expect(s.jobs.shard(shard0!.id).state).toBe("returned");
    expect(s.jobs.result(a.id)).toEqual({ sha256: digest("r0"), bytes: new Uint8Array(Buffer.from("r0")) });
    expect(s.jobs.result(b.id)).toEqual({ sha256: digest("r0"), path: "/results/0.jsonl" });
    expect(s.jobs.verifyShard(shard0!.id, digest("r0")).state).toBe("verified");
    expect(s.jobs.job(job.id)).toMatchObject({ state: "running", shardsReturned: 1, shardsVerified: 1 });

    const c = s.jobs.leaseNext(job.id, "peerA", LEASE_MS)!;
    const d = s.jobs.leaseNext(job.id, "peerC", LEASE_MS)!;
    expect(s.jobs.leaseNext(job.id, "peerB", LEASE_MS)).toBeUndefined();
    s.jobs.recordResult(c.id, { sha256: digest("r1"), bytes: Buffer.from("r1") });
    s.jobs.recordResult(d.id, { sha256: digest("bad"), bytes: Buffer.from("bad") });
    expect(s.jobs.job(job.id).state).toBe("returned");
    s.jobs.verifyShard(shard1!.id, digest("r1"));
    expect(s.jobs.assignment(d.id)).toMatchObject({ state: "failed", reason: "result rejected" });
    const done = s.jobs.job(job.id);
    expect(done).toMatchObject({ state: "verified", shardsVerified: 2, finishedAt: s.clock.t });
    expect(s.jobs.unfinishedJobs()).toEqual([]);
    expect(errorOf(() => s.jobs.lease(shard1!.id, "peerD", LEASE_MS))?.name).toBe("IllegalTransitionError");
  });

  test("illegal moves are refused with IllegalTransitionError and change nothing", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec({ redundancy: 1 }), plans(1));
    const shard = s.jobs.shards(job.id)[0]!;
    expect(errorOf(() => s.jobs.verifyShard(shard.id, SHA))?.name).toBe("IllegalTransitionError");
    const a = s.jobs.lease(shard.id, "peerA", LEASE_MS);
    s.jobs.recordResult(a.id, { sha256: digest("x"), path: "/x" });
    expect(errorOf(() => s.jobs.start(a.id))?.name).toBe("IllegalTransitionError");
    expect(errorOf(() => s.jobs.release(a.id, "gone"))?.name).toBe("IllegalTransitionError");
    expect(s.jobs.assignment(a.id).state).toBe("returned");
    expect(s.jobs.shard(shard.id)).toMatchObject({ state: "returned", retries: 0 });
    expect(errorOf(() => s.jobs.verifyShard(shard.id, digest("y")))?.name).toBe("ResultConflictError");
    s.jobs.verifyShard(shard.id, digest("x"));
    expect(errorOf(() => s.jobs.failJob(job.id, "late"))?.name).toBe("IllegalTransitionError");
    expect(errorOf(() => s.jobs.job("nope"))?.name).toBe("JobNotFoundError");
  });

  test("the same result twice counts once; a different one, a late one or bad bytes are refused", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec(), plans(1));
    const shard = s.jobs.shards(job.id)[0]!;
    const a = s.jobs.lease(shard.id, "peerA", LEASE_MS);
    const first = s.jobs.recordResult(a.id, { sha256: digest("r"), bytes: Buffer.from("r") });
    const second = s.jobs.recordResult(a.id, { sha256: digest("r"), bytes: Buffer.from("r") });
    expect([first.duplicate, second.duplicate]).toEqual([false, true]);
    expect(s.jobs.progress(job.id).copies.returned).toBe(1);
    expect(s.jobs.shard(shard.id).missing).toBe(1);
    expect(errorOf(() => s.jobs.recordResult(a.id, { sha256: digest("s"), path: "/s" }))?.name).toBe(
      "ResultConflictError",
    );
    const b = s.jobs.lease(shard.id, "peerB", LEASE_MS);
    expect(errorOf(() => s.jobs.recordResult(b.id, { sha256: digest("r"), bytes: Buffer.from("x") }))?.name).toBe(
      "IntegrityError",
    );
    s.clock.t += LEASE_MS;
    expect(s.jobs.expireLeases(s.clock.t).map((x) => x.id)).toEqual([b.id]);
    expect(errorOf(() => s.jobs.recordResult(b.id, { sha256: digest("r"), path: "/r" }))?.name).toBe("LeaseLostError");
  });

  test("expired leases go back, are recorded, and the shard is leased again elsewhere", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec({ redundancy: 1 }), plans(3));
    const [a, b] = [s.jobs.leaseNext(job.id, "peerA", LEASE_MS)!, s.jobs.leaseNext(job.id, "peerB", 5 * LEASE_MS)!];
    s.jobs.start(a.id);
    s.clock.t += LEASE_MS - 1;
    expect(s.jobs.expireLeases(s.clock.t)).toEqual([]);
    s.jobs.renew(b.id, LEASE_MS);
    s.clock.t += 1;
    const expired = s.jobs.expireLeases(s.clock.t);
    expect(expired.map((x) => [x.id, x.state, x.reason])).toEqual([[a.id, "reassigned", "lease expired"]]);
    expect(s.jobs.shard(a.shardId)).toMatchObject({ state: "reassigned", retries: 1, missing: 1 });
    expect(s.jobs.shard(b.shardId).state).toBe("leased");
    // The lost shard is first in line again, for anyone, its old provider included.
    const c = s.jobs.leaseNext(job.id, "peerC", LEASE_MS)!;
    expect(c.shardId).toBe(a.shardId);
    s.jobs.recordResult(c.id, { sha256: digest("0"), path: "/0" });
    const report = s.jobs.report(job.id);
    expect(report.retries).toBe(1);
    expect(report.shards[0]!.copies.map((x) => [x.provider, x.state])).toEqual([
      ["peerA", "reassigned"],
      ["peerC", "returned"],
    ]);
    expect(report.providers.map((p) => [p.provider, p.copies.reassigned, p.copies.returned])).toEqual([
      ["peerA", 1, 0],
      ["peerB", 0, 0],
      ["peerC", 0, 1],
    ]);
    expect(errorOf(() => s.jobs.renew(a.id, LEASE_MS))?.name).toBe("LeaseLostError");
  });

  test("rejected copies are redone; too many losses fail the job and revoke its leases", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const store = new JobStore(s.store, { now: () => s.clock.t, maxShardRetries: 2 });
    const { job } = store.submit(spec({ redundancy: 1 }), plans(2));
    const other = store.leaseNext(job.id, "peerZ", LEASE_MS)!;
    for (const peer of ["peerA", "peerB"]) {
      const a = store.leaseNext(job.id, peer, LEASE_MS)!;
      store.reject(a.id, "malformed result");
      expect(store.job(job.id).state).toBe("running");
    }
    const last = store.leaseNext(job.id, "peerC", LEASE_MS)!;
    store.release(last.id, "provider disconnected");
    expect(store.job(job.id)).toMatchObject({ state: "failed", error: "shard 1 lost 3 copies" });
    expect(store.assignment(other.id)).toMatchObject({ state: "failed", reason: "job failed: shard 1 lost 3 copies" });
    expect(store.shards(job.id).map((x) => [x.state, x.missing])).toEqual([
      ["failed", 0],
      ["failed", 0],
    ]);
    expect(store.leaseNext(job.id, "peerD", LEASE_MS)).toBeUndefined();
  });

  test("SQLite itself refuses a second live copy of a shard for one provider", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec(), plans(1));
    const a = s.jobs.leaseNext(job.id, "peerA", LEASE_MS)!;
    const insert = s.store.db.query(
      `INSERT INTO assignments (id, shard_id, job_id, provider, state, leased_at, lease_deadline)
       VALUES (?, ?, ?, 'peerA', ?, 0, 0)`,
    );
    expect(() => insert.run("dup", a.shardId, job.id, "running")).toThrow(/UNIQUE/);
    // A lost copy does not count: the provider may take the shard again.
    insert.run("old", a.shardId, job.id, "reassigned");
  });

  test("progress counts shards and copies per state; unfinished jobs are listed oldest first", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const one = s.jobs.submit(spec(), plans(4)).job;
    s.clock.t += 1;
    const two = s.jobs.submit(spec({ idempotencyKey: "job-2" }), plans(1)).job;
    s.jobs.leaseNext(one.id, "peerA", LEASE_MS);
    const b = s.jobs.leaseNext(one.id, "peerB", LEASE_MS)!;
    s.jobs.start(b.id);
    const p = s.jobs.progress(one.id);
    expect(p.shards).toMatchObject({ queued: 3, running: 1, leased: 0 });
    expect(p.copies).toMatchObject({ leased: 1, running: 1, returned: 0 });
    expect(s.jobs.unfinishedJobs().map((j) => j.id)).toEqual([one.id, two.id]);
    expect(s.jobs.inFlight(one.id).map((x) => x.provider)).toEqual(["peerA", "peerB"]);
  });
  test("a provider's window is leased in one call; a batch of results keeps the good ones when one is refused", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec(), plans(5));
    const window = s.jobs.leaseMany(job.id, "peerA", 3, LEASE_MS);
    expect(window.map((a) => s.jobs.shard(a.shardId).index)).toEqual([0, 1, 2]);
    expect(s.jobs.leaseMany(job.id, "peerA", 10, LEASE_MS)).toHaveLength(2);
    expect(s.jobs.leaseMany(job.id, "peerA", 10, LEASE_MS)).toEqual([]);
    const [a, b, c] = window as [AssignmentRecord, AssignmentRecord, AssignmentRecord];
    const outcomes = s.jobs.recordResults([
      { assignmentId: a.id, result: { sha256: digest("0"), path: "/0" } },
      { assignmentId: b.id, result: { sha256: digest("1"), bytes: Buffer.from("wrong") } },
      { assignmentId: a.id, result: { sha256: digest("0"), path: "/0" } },
      { assignmentId: c.id, result: { sha256: digest("2"), path: "/2" } },
    ]);
    expect(outcomes.map((o) => ("error" in o ? o.error.name : o.duplicate))).toEqual([
      false,
      "IntegrityError",
      true,
      false,
    ]);
    expect([a, b, c].map((x) => s.jobs.assignment(x.id).state)).toEqual(["returned", "leased", "returned"]);
  });
  test("rejecting a returned copy sends its shard and a returned job back to work", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec({ redundancy: 1 }), plans(1));
    const a = s.jobs.leaseNext(job.id, "peerA", LEASE_MS)!;
    s.jobs.recordResult(a.id, { sha256: digest("wrong shape"), path: "/a" });
    expect(s.jobs.job(job.id).state).toBe("returned");
    s.jobs.reject(a.id, "wrong shape");
    expect(s.jobs.job(job.id)).toMatchObject({ state: "running", shardsReturned: 0 });
    expect(s.jobs.shard(a.shardId)).toMatchObject({ state: "reassigned", missing: 1, retries: 1 });
    // Not to the provider whose copy was rejected: to another one.
    expect(s.jobs.leaseNext(job.id, "peerA", LEASE_MS)).toBeUndefined();
    expect(() => s.jobs.lease(a.shardId, "peerA", LEASE_MS)).toThrow(/rejected/);
    expect(s.jobs.leaseNext(job.id, "peerB", LEASE_MS)?.shardId).toBe(a.shardId);
  });

  test("jobs past their deadline are listed so the scheduler can fail them", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const soon = s.jobs.submit(spec({ idempotencyKey: "soon", deadlineMs: s.clock.t + 10 }), plans(1)).job;
    s.jobs.submit(spec({ idempotencyKey: "later", deadlineMs: s.clock.t + 1_000 }), plans(1));
    expect(s.jobs.overdueJobs(s.clock.t + 9)).toEqual([]);
    expect(s.jobs.overdueJobs(s.clock.t + 10).map((j) => j.id)).toEqual([soon.id]);
    s.jobs.failJob(soon.id, "deadline passed");
    expect(s.jobs.overdueJobs(s.clock.t + 10)).toEqual([]);
  });
});
