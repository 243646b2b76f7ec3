import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../../test/helpers/paths.ts";
import type { Shard } from "../../jobs/records.ts";
import type { JobSpec } from "../../jobs/spec.ts";
import { splitPrompts } from "../../jobs/split.ts";
import type { JobEvent } from "../aggregator/api.ts";
import type { InfernetNode } from "../node.ts";
import { FakeAggregator, summary } from "../protocols/job/test-aggregator.ts";
import { ControlClient } from "./client.ts";
import { controlJobOps } from "./jobs-client.ts";
import type { AggregatorRef } from "./jobs-ops.ts";
import { JOBS_PATH } from "./jobs-protocol.ts";
import { startControlServer } from "./server.ts";

// The control transport of batch jobs, end to end over the Unix socket: a command's shards streamed
// in, events, output and report streamed out. The node is a stand-in whose own aggregator is the job
// protocol's in-memory test aggregator (the real aggregator and protocol are tested on their own);
// the subject is the socket, its encoding and its errors.
const SELF = "12D3KooWSelfAggregatorForControlTests";

async function setup(dir: string) {
  const aggregator = new FakeAggregator();
  const node = { peerId: SELF, aggregator, status: () => ({ peerId: SELF }) } as unknown as InfernetNode;
  const server = await startControlServer(node, dir);
  const ops = controlJobOps(await ControlClient.require(dir), SELF);
  const prompts = join(dir, "prompts.jsonl");
  writeFileSync(prompts, Array.from({ length: 25 }, (_, i) => JSON.stringify({ prompt: `story ${i}` })).join("\n"));
  const splitter = await splitPrompts(prompts, { shardSize: 10 });
  const spec: JobSpec = {
    model: { name: "stories260k", sha256: "ab".repeat(32) },
    input: { kind: "prompts", path: "prompts.jsonl" },
    shardSize: 10,
    redundancy: 2,
    maxPriceMsat: 1_000,
    deadlineMs: Date.now() + 60_000,
    idempotencyKey: "k1",
  };
  const shards: Shard[] = [];
  for await (const s of splitter.shards()) shards.push(s);
  const header = { spec, plan: splitter.plan, kind: splitter.kind };
  return { aggregator, ops, server, header, shards, [Symbol.asyncDispose]: () => server.stop() };
}

async function* from<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

const self: AggregatorRef = { peerId: SELF, addrs: [] };

test("submit streams every shard through the socket intact; the same key again uploads nothing", async () => {
  using dir = tempDir();
  await using s = await setup(dir.path);
  const uploaded: number[] = [];
  const first = await s.ops.submit(self, s.header, from(s.shards), {
    signal: AbortSignal.timeout(10_000),
    onUploaded: (n) => uploaded.push(n),
  });
  expect(first).toEqual({ jobId: "job-1", created: true });
  expect(uploaded).toEqual([1, 2, 3]);
  expect(s.aggregator.jobs.get("job-1")?.shards).toEqual(s.shards);
  expect(s.aggregator.jobs.get("job-1")?.client).toBe(SELF);
  const again = await s.ops.submit(self, s.header, from(s.shards), { signal: AbortSignal.timeout(10_000) });
  expect(again).toEqual({ jobId: "job-1", created: false });
  expect(s.aggregator.uploads).toHaveLength(1);
});

test("events come through in order with their shard states, and end at finished", async () => {
  using dir = tempDir();
  await using s = await setup(dir.path);
  await s.ops.submit(self, s.header, from(s.shards), { signal: AbortSignal.timeout(10_000) });
  const job = s.aggregator.jobs.get("job-1");
  if (!job) throw new Error("no job");
  const progress: JobEvent = { type: "progress", job: summary(job), shards: Uint8Array.from([0, 2, 4]) };
  s.aggregator.emit("job-1", progress);
  const seen: JobEvent[] = [];
  const finished = await s.ops.follow(self, "job-1", {
    signal: AbortSignal.timeout(10_000),
    onEvent: (e) => {
      seen.push(e);
      if (e.type === "progress") {
        s.aggregator.emit("job-1", {
          type: "finished",
          job: summary(job, { state: "verified", shardsVerified: 3, shardsReturned: 3 }),
          output: { bytes: 3, sha256: "00".repeat(32), records: 25 },
        });
      }
    },
  });
  expect(seen[0]).toEqual(progress);
  expect(finished.job.state).toBe("verified");
  expect(seen.at(-1)).toEqual(finished);
});

test("output: fetched whole, resumed from a partial prefix, sha256-checked", async () => {
  using dir = tempDir();
  await using s = await setup(dir.path);
  await s.ops.submit(self, s.header, from(s.shards), { signal: AbortSignal.timeout(10_000) });
  const text = Array.from({ length: 25 }, (_, i) => `${JSON.stringify({ index: i, output: `out ${i}` })}\n`).join("");
  const path = join(dir.path, "merged.jsonl");
  writeFileSync(path, text);
  const sha256 = new Bun.CryptoHasher("sha256").update(text).digest("hex");
  const job = s.aggregator.jobs.get("job-1");
  if (!job) throw new Error("no job");
  job.output = { path, bytes: Buffer.byteLength(text), sha256, records: 25 };

  const dest = join(dir.path, "out.jsonl");
  const got = await s.ops.fetchOutput(self, "job-1", dest, { signal: AbortSignal.timeout(10_000) });
  expect(got).toEqual({ bytes: Buffer.byteLength(text), sha256, records: 25 });
  expect(await Bun.file(dest).text()).toBe(text);

  const resumed = join(dir.path, "resumed.jsonl");
  writeFileSync(`${resumed}.partial`, text.slice(0, 40));
  const offsets: number[] = [];
  await s.ops.fetchOutput(self, "job-1", resumed, {
    signal: AbortSignal.timeout(10_000),
    onBytes: (b) => offsets.push(b),
  });
  expect(await Bun.file(resumed).text()).toBe(text);
  expect(offsets.at(-1)).toBe(Buffer.byteLength(text));
  expect(await Bun.file(`${resumed}.partial`).exists()).toBe(false);

  const corrupt = join(dir.path, "corrupt.jsonl");
  writeFileSync(`${corrupt}.partial`, "X".repeat(40));
  const err = await s.ops
    .fetchOutput(self, "job-1", corrupt, { signal: AbortSignal.timeout(10_000) })
    .catch((e: Error) => e);
  expect((err as Error).name).toBe("IntegrityError");
  expect(await Bun.file(`${corrupt}.partial`).exists()).toBe(false);
});

test("report and errors keep their types across the socket", async () => {
  using dir = tempDir();
  await using s = await setup(dir.path);
  await s.ops.submit(self, s.header, from(s.shards), { signal: AbortSignal.timeout(10_000) });
  const report = await s.ops.report(self, "job-1", AbortSignal.timeout(10_000));
  expect(report.shards).toHaveLength(3);
  expect(report.job.spec.idempotencyKey).toBe("k1");

  const signal = AbortSignal.timeout(10_000);
  expect(await s.ops.report(self, "job-9", signal).catch((e: Error) => e.name)).toBe("JobNotFoundError");
  const follow = s.ops.follow(self, "job-9", { signal, onEvent: () => {} });
  expect(await follow.catch((e: Error) => e.name)).toBe("JobNotFoundError");
  const unfinished = s.ops.fetchOutput(self, "job-1", join(dir.path, "x"), { signal });
  expect(await unfinished.catch((e: Error) => e.name)).toBe("InvalidInputError");
  const conflict = s.ops.submit(self, { ...s.header, spec: { ...s.header.spec, maxPriceMsat: 5 } }, from(s.shards), {
    signal,
  });
  expect(await conflict.catch((e: Error) => e.name)).toBe("IdempotencyConflictError");

  const control = await ControlClient.require(dir.path);
  const bad = await fetch(`http://infernet${JOBS_PATH}`, { unix: control.path, method: "POST", body: "{}\n" });
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as { name: string }).name).toBe("UsageError");
});
