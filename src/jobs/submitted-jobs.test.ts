import { expect, test } from "bun:test";
import { tempDir } from "../../test/helpers/paths.ts";
import { Store } from "../store/db.ts";
import { SubmittedJobs } from "./submitted-jobs.ts";

function open(dir: string, clock = { t: 1_000 }) {
  const store = Store.open(dir);
  return { store, jobs: new SubmittedJobs(store, () => clock.t), clock, [Symbol.dispose]: () => store.close() };
}

const job = (id: string, key: string, aggregator = "12D3KooWAgg") => ({
  jobId: id,
  aggregator,
  aggregatorAddrs: [`/ip4/127.0.0.1/udp/7707/quic-v1/p2p/${aggregator}`],
  idempotencyKey: key,
  model: "mnist-8",
  records: 10_000,
  shardCount: 20,
  outputPath: "/tmp/out.jsonl",
});

test("records a submission and finds it by id and by idempotency key", () => {
  using dir = tempDir();
  using s = open(dir.path);
  const recorded = s.jobs.record(job("j1", "k1"));
  expect(recorded).toMatchObject({ ...job("j1", "k1"), state: "queued", error: undefined, submittedAt: 1_000 });
  expect(s.jobs.get("j1")).toEqual(recorded);
  expect(s.jobs.get("j1", "12D3KooWAgg")).toEqual(recorded);
  expect(s.jobs.get("j1", "other")).toBeUndefined();
  expect(s.jobs.byKey("k1")?.jobId).toBe("j1");
  expect(s.jobs.byKey("k2")).toBeUndefined();
});

test("lists newest first, with a limit", () => {
  using dir = tempDir();
  using s = open(dir.path);
  for (let i = 0; i < 5; i++) {
    s.clock.t = 1_000 + i;
    s.jobs.record(job(`j${i}`, `k${i}`));
  }
  expect(s.jobs.list().map((j) => j.jobId)).toEqual(["j4", "j3", "j2", "j1", "j0"]);
  expect(s.jobs.list(2).map((j) => j.jobId)).toEqual(["j4", "j3"]);
});

test("keeps the state current; a fetched job stays fetched", () => {
  using dir = tempDir();
  using s = open(dir.path);
  s.jobs.record(job("j1", "k1"));
  s.clock.t = 2_000;
  s.jobs.update("j1", "12D3KooWAgg", "running");
  expect(s.jobs.get("j1")).toMatchObject({ state: "running", updatedAt: 2_000 });
  s.jobs.update("j1", "12D3KooWAgg", "failed", "deadline passed");
  expect(s.jobs.get("j1")).toMatchObject({ state: "failed", error: "deadline passed" });
  s.jobs.update("j1", "12D3KooWAgg", "fetched");
  s.jobs.update("j1", "12D3KooWAgg", "verified");
  expect(s.jobs.get("j1")?.state).toBe("fetched");
});

test("the same key recorded again with another aggregator names the new job; re-recording the same job keeps it", () => {
  using dir = tempDir();
  using s = open(dir.path);
  s.jobs.record(job("j1", "k1", "aggA"));
  s.jobs.update("j1", "aggA", "running");
  s.jobs.record({ ...job("j1", "k1", "aggA"), outputPath: "/tmp/elsewhere.jsonl" });
  expect(s.jobs.get("j1")).toMatchObject({ state: "running", outputPath: "/tmp/elsewhere.jsonl" });
  s.jobs.record(job("j2", "k1", "aggB"));
  expect(s.jobs.byKey("k1")).toMatchObject({ jobId: "j2", aggregator: "aggB" });
  expect(s.jobs.get("j1")).toBeUndefined();
});

test("survives reopening the database (a real file)", () => {
  using dir = tempDir();
  {
    using s = open(dir.path);
    s.jobs.record(job("j1", "k1"));
  }
  using again = open(dir.path);
  expect(again.jobs.get("j1")?.aggregatorAddrs).toEqual(job("j1", "k1").aggregatorAddrs);
});
