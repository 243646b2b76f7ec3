import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { Store } from "../store/db.ts";
import { snapshotJob, tokensPerRecord } from "./job-snapshot.ts";
import { JobStore } from "./job-store.ts";
import { MODEL_SHA } from "./scheduler-fixtures.ts";
import { type JobSpecInput, parseJobSpec } from "./spec.ts";

const LEASE_MS = 1_000;
const digest = (bytes: Uint8Array) => new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
const result = (text: string) => {
  const bytes = new TextEncoder().encode(text);
  return { sha256: digest(bytes), bytes };
};

function spec(over: Partial<JobSpecInput> = {}): JobSpecInput {
  return {
    model: { name: "mnist-8", sha256: MODEL_SHA },
    input: { kind: "idx", path: "images.idx" },
    shardSize: 10,
    maxPriceMsat: 1_000,
    deadlineMs: 2_000_000_000_000,
    idempotencyKey: "spec-1",
    ...over,
  };
}

function open(dir: string) {
  const store = Store.openFile(join(dir, "jobs.db"));
  const clock = { t: 1_000_000 };
  let n = 0;
  const jobs = new JobStore(store, { now: () => clock.t, newId: () => `id-${++n}` });
  return { store, jobs, clock, [Symbol.dispose]: () => store.close() };
}

function errorOf(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  return undefined;
}

describe("leaseSpeculative", () => {
  test("an extra copy beside a slow one: the first two back are verified, the slow one's result is refused", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec(), [{ start: 0, count: 10 }]);
    const shard = s.jobs.shards(job.id)[0]!;
    const fast = s.jobs.lease(shard.id, "a", LEASE_MS);
    const slow = s.jobs.lease(shard.id, "b", LEASE_MS);
    expect(errorOf(() => s.jobs.lease(shard.id, "c", LEASE_MS))?.name).toBe("LeaseRefusedError");
    s.jobs.recordResult(fast.id, result("labels"));

    const extra = s.jobs.leaseExtra(shard.id, "c", LEASE_MS);
    expect(extra.state).toBe("leased");
    // Nothing about the shard changed: it still waits on a copy in flight and lacks none.
    expect(s.jobs.shard(shard.id)).toMatchObject({ state: "leased", missing: 0 });
    // Only one extra copy, never on a provider that holds one.
    expect(errorOf(() => s.jobs.leaseExtra(shard.id, "d", LEASE_MS))?.name).toBe("LeaseRefusedError");

    s.jobs.recordResult(extra.id, result("labels"));
    expect(s.jobs.shard(shard.id).state).toBe("returned");
    s.jobs.verifyShard(shard.id, result("labels").sha256);
    expect(s.jobs.job(job.id).state).toBe("verified");
    expect(s.jobs.assignments(shard.id).map((a) => [a.provider, a.state])).toEqual([
      ["a", "verified"],
      ["b", "failed"],
      ["c", "verified"],
    ]);
    expect(errorOf(() => s.jobs.recordResult(slow.id, result("labels")))?.name).toBe("LeaseLostError");
    expect(s.jobs.job(job.id).shardsVerified).toBe(1);
  });

  test("refused for a shard with no copy in flight, and for a provider already holding one", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec({ redundancy: 1 }), [
      { start: 0, count: 10 },
      { start: 10, count: 10 },
    ]);
    const [first, second] = s.jobs.shards(job.id).map((x) => ({ id: x.id }));
    if (!first || !second) throw new Error("two shards expected");
    expect(errorOf(() => s.jobs.leaseExtra(first.id, "a", LEASE_MS))?.name).toBe("IllegalTransitionError");
    s.jobs.lease(second.id, "a", LEASE_MS);
    expect(errorOf(() => s.jobs.leaseExtra(second.id, "a", LEASE_MS))?.name).toBe("LeaseRefusedError");
    // An extra copy that expires is lost like any other; the first copy still counts.
    s.jobs.leaseExtra(second.id, "b", LEASE_MS);
    s.clock.t += LEASE_MS;
    expect(s.jobs.expireLeases().map((a) => a.provider)).toEqual(["a", "b"]);
    expect(s.jobs.shard(second.id)).toMatchObject({ state: "reassigned", missing: 1 });
  });
});

describe("snapshotJob", () => {
  test("a stored job as the planner sees it: ids, live copies, work per record", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec(), [
      { start: 0, count: 10 },
      { start: 10, count: 5 },
    ]);
    const first = s.jobs.shards(job.id)[0];
    if (!first) throw new Error("a shard expected");
    const lost = s.jobs.lease(first.id, "a", LEASE_MS);
    s.jobs.release(lost.id, "provider gone");
    s.jobs.lease(first.id, "b", LEASE_MS);
    const snap = snapshotJob(s.jobs, job.id);
    expect(snap).toMatchObject({ id: job.id, sha256: MODEL_SHA, redundancy: 2, totalTokens: 15, tokensPerRecord: 1 });
    expect(snap.shards.map((x) => [x.id, x.index, x.count, x.missing, x.copies.map((c) => c.provider)])).toEqual([
      [first.id, 0, 10, 1, ["b"]],
      [first.id + 1, 1, 5, 2, []],
    ]);
  });

  test("prompts cost their token budget per record, tensor records one unit", () => {
    expect(tokensPerRecord(parseJobSpec(spec()))).toBe(1);
    const prompts = spec({ input: { kind: "prompts", path: "p.jsonl" } });
    expect(tokensPerRecord(parseJobSpec(prompts))).toBe(256);
    expect(tokensPerRecord(parseJobSpec({ ...prompts, params: { maxTokens: 64 } }))).toBe(64);
  });
});

describe("disown", () => {
  test("a banned provider's copies of an unfinished job all fail: verified ones reopen their shard, in-flight ones free their place and a late result is refused", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec({ redundancy: 2 }), [
      { start: 0, count: 10 },
      { start: 10, count: 10 },
      { start: 20, count: 10 },
      { start: 30, count: 10 },
    ]);
    const [verified, waiting, flying, vouched] = s.jobs.shards(job.id).map((x) => x.id) as number[];
    // Shard 0: the liar's single copy (adaptive replication) verified. Shard 1: its copy back,
    // waiting for a twin. Shard 2: its copy still running. Shard 3: verified with an honest twin.
    s.jobs.setTarget(verified as number, 1);
    const v = s.jobs.lease(verified as number, "liar", LEASE_MS);
    s.jobs.recordResult(v.id, result("v"));
    s.jobs.verifyShard(verified as number, result("v").sha256);
    const w = s.jobs.lease(waiting as number, "liar", LEASE_MS);
    s.jobs.recordResult(w.id, result("w"));
    const f = s.jobs.lease(flying as number, "liar", LEASE_MS);
    s.jobs.start(f.id);
    const t1 = s.jobs.lease(vouched as number, "liar", LEASE_MS);
    const t2 = s.jobs.lease(vouched as number, "honest", LEASE_MS);
    s.jobs.recordResult(t1.id, result("t"));
    s.jobs.recordResult(t2.id, result("t"));
    s.jobs.verifyShard(vouched as number, result("t").sha256);

    const reopened = s.jobs.disown("liar", "banned");
    expect(reopened.map((x) => x.id)).toEqual([verified as number]);
    for (const a of [v, w, f, t1]) expect(s.jobs.assignment(a.id)).toMatchObject({ state: "failed", reason: "banned" });
    expect(s.jobs.shard(verified as number)).toMatchObject({ state: "reassigned", missing: 2 });
    expect(s.jobs.shard(waiting as number).missing).toBe(2);
    expect(s.jobs.shard(flying as number).missing).toBe(2);
    expect(s.jobs.shard(vouched as number).state).toBe("verified");
    expect(errorOf(() => s.jobs.recordResult(f.id, result("late")))?.name).toBe("LeaseLostError");
    expect(s.jobs.job(job.id).state).toBe("running");
  });

  test("finished jobs are left alone", () => {
    using dir = tempDir();
    using s = open(dir.path);
    const { job } = s.jobs.submit(spec({ redundancy: 1 }), [{ start: 0, count: 10 }]);
    const [shard] = s.jobs.shards(job.id).map((x) => x.id) as number[];
    const a = s.jobs.lease(shard as number, "liar", LEASE_MS);
    s.jobs.recordResult(a.id, result("x"));
    s.jobs.verifyShard(shard as number, result("x").sha256);
    expect(s.jobs.job(job.id).state).toBe("verified");
    expect(s.jobs.disown("liar", "banned")).toEqual([]);
    expect(s.jobs.assignment(a.id).state).toBe("verified");
  });
});
