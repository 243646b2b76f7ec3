import { expect, test } from "bun:test";
import { MAX_FINISHED_WORK, mergeWork, WorkLog } from "./work-log.ts";

const start = { kind: "shard", model: "mnist-8", peer: "12D3KooWaggregator", unit: "records", total: 100 } as const;

test("an entry runs, counts its progress, and ends once: done or failed with the reason", () => {
  let now = 1_000;
  const log = new WorkLog(() => now);
  const a = log.begin(start);
  const b = log.begin({ ...start, kind: "request", unit: "tokens", total: 20 });
  a.reach(40);
  a.reach(30); // ranges may arrive out of order: progress never goes back
  b.add(5);
  b.add(3);
  expect(log.entries(10).map((w) => [w.id, w.done, w.outcome])).toEqual([
    [1, 40, "running"],
    [2, 8, "running"],
  ]);
  now = 2_500;
  a.end();
  b.end(new Error("the deadline of 5000 ms passed"));
  b.end(); // a second end changes nothing
  const [newest, older] = log.entries(10);
  expect(newest).toMatchObject({ id: 2, outcome: "failed", error: "the deadline of 5000 ms passed", endedAt: 2_500 });
  expect(older).toMatchObject({ id: 1, outcome: "done", done: 40, startedAt: 1_000, endedAt: 2_500 });
});

test("finished entries are a bounded ring, newest first; entries are copies", () => {
  const log = new WorkLog();
  for (let i = 0; i < MAX_FINISHED_WORK * 3; i++) log.begin(start).end();
  const entries = log.entries(1_000);
  expect(entries).toHaveLength(MAX_FINISHED_WORK);
  expect(entries[0]?.id).toBe(MAX_FINISHED_WORK * 3);
  (entries[0] as { done: number }).done = 999;
  expect(log.entries(1)[0]?.done).toBe(0);
});

test("merged logs: running first (oldest on top), then finished, newest first, bounded", () => {
  let now = 0;
  const infer = new WorkLog(() => now);
  const shard = new WorkLog(() => now);
  now = 10;
  const r1 = infer.begin(start);
  now = 20;
  shard.begin(start);
  now = 30;
  r1.end();
  now = 40;
  shard.begin(start).end();
  const merged = mergeWork([infer.entries(10), shard.entries(10)], 10);
  expect(merged.map((w) => [w.outcome, w.startedAt, w.endedAt])).toEqual([
    ["running", 20, undefined],
    ["done", 40, 40],
    ["done", 10, 30],
  ]);
  expect(mergeWork([infer.entries(10), shard.entries(10)], 2)).toHaveLength(2);
});
