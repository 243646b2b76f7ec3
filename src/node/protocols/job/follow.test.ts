import { afterAll, beforeAll, expect, test } from "bun:test";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { multiaddr } from "@multiformats/multiaddr";
import { planShards, type Shard } from "../../../jobs/records.ts";
import type { JobEvent } from "../../aggregator/api.ts";
import { createHost, type Host } from "../../host.ts";
import { eventually } from "../infer/test-engines.ts";
import { connect, type TestHost, testHost } from "../infer/test-hosts.ts";
import { followJob, type JobInit, type JobService, jobProtocol } from "./index.ts";
import { FakeAggregator, summary } from "./test-aggregator.ts";

// Following a job across an aggregator restart: real libp2p hosts over QUIC on 127.0.0.1, the
// restarted aggregator with the same key (so the same peer id) on the same port.

let fake: FakeAggregator;
let key: PrivateKey;
let aggregator: Host | undefined;
let client: TestHost;
let jobs: JobService;

async function startAggregator(listen: string, init: JobInit = {}): Promise<Host> {
  return await createHost({
    privateKey: key,
    listen: [listen],
    mdns: false,
    services: { job: jobProtocol({ aggregator: () => fake, ...init }) },
  });
}

async function submit(host: Host): Promise<string> {
  const plan = planShards(2, { shardSize: 1 });
  const shards: Shard[] = [0, 1].map((i) => ({
    index: i,
    start: i,
    count: 1,
    payload: { kind: "prompts", prompts: [{ prompt: `p${i}` }] },
  }));
  const spec = {
    model: { name: "m", sha256: "b".repeat(64) },
    input: { kind: "prompts" as const, path: "in.jsonl" },
    redundancy: 1,
    maxPriceMsat: 1_000,
    deadlineMs: Date.now() + 3_600_000,
    idempotencyKey: `follow-${crypto.randomUUID()}`,
  };
  const header = { spec, plan, kind: "prompts" as const };
  return (
    await jobs.submit(
      host.peerId,
      header,
      (async function* () {
        yield* shards;
      })(),
    )
  ).jobId;
}

beforeAll(async () => {
  fake = new FakeAggregator();
  key = await generateKeyPair("Ed25519");
  aggregator = await startAggregator("/ip4/127.0.0.1/udp/0/quic-v1");
  client = await testHost({ job: jobProtocol() });
  await connect(client, aggregator);
  jobs = client.services.job as JobService;
});

afterAll(async () => {
  await Promise.all([client?.stop(), aggregator?.stop()]);
});

test("followJob reconnects after the aggregator restarts and returns finished", async () => {
  const first = aggregator as Host;
  const jobId = await submit(first);
  const job = fake.jobs.get(jobId);
  if (!job) throw new Error("no job");
  fake.emit(jobId, { type: "progress", job: summary(job), shards: new Uint8Array([1, 0]) });
  const events: JobEvent[] = [];
  const reconnects: string[] = [];
  const stop = new AbortController();
  const following = followJob(jobs, first.peerId, jobId, {
    signal: stop.signal,
    onEvent: (e) => events.push(e),
    onReconnect: (attempt, error) => reconnects.push(`${attempt}: ${error.name}`),
  });
  // A failed expectation below must not leave the follow running into the next test.
  following.catch(() => {});
  try {
    expect(await eventually(() => events.length === 1, 10_000)).toBe(true);

    const address = first.getMultiaddrs().find((a) => a.toString().includes("/quic-v1"));
    await first.stop();
    expect(await eventually(() => reconnects.length >= 1, 10_000)).toBe(true);
    // The restarted aggregator: same key, same port; the client's peer store holds the address.
    const listen = String(address).replace(/\/p2p\/.*$/, "");
    aggregator = await startAggregator(listen);
    await client.peerStore.merge(aggregator.peerId, { multiaddrs: [multiaddr(listen)] });
    expect(aggregator.peerId.equals(first.peerId)).toBe(true);
    fake.emit(jobId, { type: "progress", job: summary(job, { shardsVerified: 1 }), shards: new Uint8Array([4, 2]) });
    fake.emit(jobId, {
      type: "finished",
      job: summary(job, { state: "verified", shardsVerified: 2 }),
      output: { bytes: 1, sha256: "c".repeat(64), records: 2 },
    });

    const finished = await following;
    expect(finished.type).toBe("finished");
    expect(finished.job.shardsVerified).toBe(2);
    expect(events[0]).toMatchObject({ type: "progress", shards: new Uint8Array([1, 0]) });
    expect(events.at(-1)).toEqual(finished);
    expect(reconnects[0]).toBe("1: RemoteJobError");
  } finally {
    stop.abort();
  }
}, 60_000);

test("followJob passes JobNotFoundError through at once", async () => {
  const reconnects: number[] = [];
  const err = await followJob(jobs, (aggregator as Host).peerId, "job-none", {
    onEvent: () => {},
    onReconnect: (attempt) => reconnects.push(attempt),
  }).catch((e: Error) => e);
  expect(err).toMatchObject({ name: "JobNotFoundError" });
  expect(reconnects).toEqual([]);
});

test("followJob gives up once the window passes with no reconnection", async () => {
  const host = aggregator as Host;
  const jobId = await submit(host);
  const job = fake.jobs.get(jobId);
  if (!job) throw new Error("no job");
  fake.emit(jobId, { type: "progress", job: summary(job), shards: new Uint8Array([0, 0]) });
  const reconnects: number[] = [];
  const following = followJob(jobs, host.peerId, jobId, {
    onEvent: () => {},
    onReconnect: (attempt) => reconnects.push(attempt),
    reconnectWindowMs: 1_000,
  }).catch((e: Error) => e);
  expect(await eventually(() => host.getConnections().length > 0, 5_000)).toBe(true);
  await host.stop();
  aggregator = undefined;
  const err = await following;
  expect(err).toBeInstanceOf(Error);
  expect(reconnects.length).toBeGreaterThan(0);
  expect(reconnects).toEqual(reconnects.map((_, i) => i + 1));
}, 30_000);

test("a watch notices a silent aggregator, and keepalives keep a quiet one", async () => {
  const quiet = await testHost({ job: jobProtocol({ aggregator: () => fake, keepaliveMs: 60_000 }) });
  const chatty = await testHost({ job: jobProtocol({ aggregator: () => fake, keepaliveMs: 50 }) });
  const impatient = await testHost({ job: jobProtocol({ quietTimeoutMs: 400 }) });
  try {
    await connect(impatient, quiet);
    await connect(impatient, chatty);
    const theirs = impatient.services.job as JobService;
    const plan = planShards(1);
    const shard: Shard = { index: 0, start: 0, count: 1, payload: { kind: "prompts", prompts: [{ prompt: "x" }] } };
    const spec = {
      model: { name: "m", sha256: "b".repeat(64) },
      input: { kind: "prompts" as const, path: "in.jsonl" },
      redundancy: 1,
      maxPriceMsat: 1,
      deadlineMs: Date.now() + 3_600_000,
      idempotencyKey: "silent",
    };
    const { jobId } = await theirs.submit(
      quiet.peerId,
      { spec, plan, kind: "prompts" },
      (async function* () {
        yield shard;
      })(),
    );
    // No event yet: the quiet aggregator sends nothing at all, the chatty one keepalives.
    const silent = (async () => {
      for await (const _ of theirs.watch(quiet.peerId, jobId)) return "event";
    })();
    await expect(silent).rejects.toMatchObject({ name: "TimeoutError" });
    const events: string[] = [];
    const watching = (async () => {
      for await (const e of theirs.watch(chatty.peerId, jobId)) events.push(e.type);
    })();
    // Longer than the client's quiet timeout, with nothing but keepalives.
    await Bun.sleep(1_200);
    const job = fake.jobs.get(jobId);
    if (!job) throw new Error("no job");
    fake.emit(jobId, { type: "finished", job: summary(job, { state: "failed", error: "test" }) });
    await watching;
    expect(events).toEqual(["finished"]);
  } finally {
    await Promise.all([impatient.stop(), quiet.stop(), chatty.stop()]);
  }
}, 30_000);
