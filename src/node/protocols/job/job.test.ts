import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeadlineTooShortError, ModelNotServedError, PriceTooLowError } from "../../../jobs/feasibility.ts";
import { planShards, type Shard, type ShardPayload, shardRange } from "../../../jobs/records.ts";
import type { JobSpec } from "../../../jobs/spec.ts";
import { InsufficientFundsError } from "../../../payments/ledger.ts";
import type { JobUploadHeader } from "../../aggregator/api.ts";
import { eventually } from "../infer/test-engines.ts";
import { connect, type TestHost, testHost } from "../infer/test-hosts.ts";
import { JOB_PROTOCOL, type JobService, jobProtocol, OUTPUT_CHUNK_BYTES } from "./index.ts";
import { FakeAggregator, summary } from "./test-aggregator.ts";

// Real libp2p hosts over QUIC on 127.0.0.1; the aggregator behind the protocol is an in-memory fake.

const SHA = "a".repeat(64);
let keys = 0;
const spec = (patch: Partial<JobSpec> = {}): JobSpec => ({
  model: { name: "m", sha256: SHA },
  input: { kind: "prompts", path: "in.jsonl" },
  redundancy: 2,
  maxPriceMsat: 5_000,
  deadlineMs: Date.now() + 3_600_000,
  idempotencyKey: `key-${++keys}`,
  ...patch,
});

/** A job of `records` records in shards of `size`, each shard's payload made by `payload(start, count)`. */
function job(
  records: number,
  size: number,
  kind: ShardPayload["kind"],
  payload: (start: number, count: number) => ShardPayload,
) {
  const plan = planShards(records, { shardSize: size });
  const shards: Shard[] = Array.from({ length: plan.shardCount }, (_, index) => {
    const { start, count } = shardRange(plan, index);
    return { index, start, count, payload: payload(start, count) };
  });
  const header: JobUploadHeader = { spec: spec(), plan, kind };
  return { header, shards };
}

const prompts = (start: number, count: number): ShardPayload => ({
  kind: "prompts",
  prompts: Array.from({ length: count }, (_, i) => ({ prompt: `prompt ${start + i}`, maxTokens: 8, stop: ["."] })),
});
const images = (start: number, count: number): ShardPayload => ({
  kind: "images",
  images: Array.from({ length: count }, (_, i) => ({
    width: 4,
    height: 3,
    channels: 3 as const,
    data: Uint8Array.from({ length: 36 }, (_, j) => (start + i + j) % 256),
  })),
  names: Array.from({ length: count }, (_, i) => `img-${start + i}.png`),
});
const tensor = (start: number, count: number): ShardPayload => ({
  kind: "tensor",
  tensor: {
    type: "float32",
    dims: [count, 3],
    data: Float32Array.from({ length: count * 3 }, (_, i) => start + i / 4),
  },
});

async function* iterate(shards: Shard[], pulled?: { n: number }): AsyncGenerator<Shard> {
  for (const s of shards) {
    if (pulled) pulled.n += 1;
    yield s;
  }
}

let fake: FakeAggregator;
let aggregator: TestHost;
let client: TestHost;
let other: TestHost;
let jobs: JobService;
let dir: string;

beforeAll(async () => {
  fake = new FakeAggregator();
  dir = mkdtempSync(join(tmpdir(), "infernet-job-"));
  aggregator = await testHost({ job: jobProtocol({ aggregator: () => fake, maxUploads: 1 }) });
  client = await testHost({ job: jobProtocol() });
  other = await testHost({ job: jobProtocol() });
  await connect(client, aggregator);
  await connect(other, aggregator);
  jobs = client.services.job as JobService;
});

afterAll(async () => {
  await Promise.all([client?.stop(), other?.stop(), aggregator?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe("submit", () => {
  for (const [kind, payload] of [
    ["prompts", prompts],
    ["images", images],
    ["tensor", tensor],
  ] as const) {
    test(`uploads every ${kind} shard in order; they arrive as sent`, async () => {
      const { header, shards } = job(11, 4, kind, payload);
      const uploaded: [number, number][] = [];
      const result = await jobs.submit(aggregator.peerId, header, iterate(shards), {
        onUploaded: (n, bytes) => uploaded.push([n, bytes]),
      });
      expect(result.created).toBe(true);
      const stored = fake.jobs.get(result.jobId);
      expect(stored?.client).toBe(client.peerId.toString());
      expect(stored?.shards).toEqual(shards);
      expect(uploaded.map(([n]) => n)).toEqual([1, 2, 3]);
      expect(uploaded.at(-1)?.[1]).toBeGreaterThan(0);
    });
  }

  test("large shards to a slow aggregator stay within the upload window", async () => {
    // 6 shards of 8 MiB: more than the window, so the client must wait for acknowledgements.
    const rows = Math.floor((8 * 1024 ** 2) / 12);
    const { header, shards } = job(6 * rows, rows, "tensor", tensor);
    fake.perShard = () => Bun.sleep(500);
    try {
      const acked: number[] = [];
      const result = await jobs.submit(aggregator.peerId, header, iterate(shards), {
        onUploaded: (_, bytes) => acked.push(bytes),
      });
      expect(fake.jobs.get(result.jobId)?.shards).toEqual(shards);
      expect(acked).toHaveLength(6);
      expect(acked.at(-1)).toBeGreaterThan(6 * rows * 12);
    } finally {
      fake.perShard = undefined;
    }
  });

  test("a resubmission with the same idempotency key sends no shard", async () => {
    const { header, shards } = job(5, 2, "prompts", prompts);
    const first = await jobs.submit(aggregator.peerId, header, iterate(shards));
    const uploads = fake.uploads.length;
    const pulled = { n: 0 };
    const again = await jobs.submit(aggregator.peerId, header, iterate(shards, pulled));
    expect(again).toEqual({ jobId: first.jobId, created: false });
    expect(pulled.n).toBe(0);
    expect(fake.uploads.length).toBe(uploads);
  });

  test("the same key with another spec, or from another peer, is an IdempotencyConflictError", async () => {
    const { header, shards } = job(5, 2, "prompts", prompts);
    await jobs.submit(aggregator.peerId, header, iterate(shards));
    const changed = { ...header, spec: { ...header.spec, maxPriceMsat: 1 } };
    const err = await jobs.submit(aggregator.peerId, changed, iterate(shards)).catch((e: Error) => e);
    expect(err).toMatchObject({ name: "IdempotencyConflictError", hint: "choose a new idempotency key" });
    const theirs = (other.services.job as JobService).submit(aggregator.peerId, header, iterate(shards));
    await expect(theirs).rejects.toMatchObject({ name: "IdempotencyConflictError" });
  });

  test("scheduling refusals arrive as their own classes, with their figures and hints", async () => {
    const refusals = [
      new PriceTooLowError("too cheap", 123_456, { hint: "raise maxPriceMsat to at least 123456" }),
      new DeadlineTooShortError("too soon", 1_900_000_000_000, { hint: "set a later deadline" }),
      new ModelNotServedError("nobody serves it", { hint: "choose another model" }),
      new InsufficientFundsError("short", "client:x", 10_000_000n, 9_999_999n, { hint: "pay the aggregator more" }),
    ];
    try {
      for (const refusal of refusals) {
        fake.refuse = refusal;
        const { header, shards } = job(5, 2, "prompts", prompts);
        const err = await jobs.submit(aggregator.peerId, header, iterate(shards)).catch((e: Error) => e);
        expect(err).toBeInstanceOf(refusal.constructor as typeof Error);
        expect(err).toMatchObject({ name: refusal.name, hint: refusal.hint });
        expect((err as Error).message).toContain(refusal.message);
        if (refusal instanceof PriceTooLowError) expect((err as PriceTooLowError).neededMsat).toBe(123_456);
        if (refusal instanceof InsufficientFundsError) {
          expect(err).toMatchObject({ neededMsat: 10_000_000n, balanceMsat: 9_999_999n });
        }
        if (refusal instanceof DeadlineTooShortError) {
          expect((err as DeadlineTooShortError).expectedFinishMs).toBe(1_900_000_000_000);
        }
      }
    } finally {
      fake.refuse = undefined;
    }
  });

  test("a quote before the upload: the aggregator's estimate and lock arrive exactly; its refusals typed; nothing uploaded", async () => {
    const before = fake.uploads.length;
    const { header } = job(5, 2, "prompts", prompts);
    fake.quoted = { estimatedMsat: 987_654_321_012n, lockedMsat: 5_000_000_000n, feePercent: 1.5, providers: 7 };
    expect(await jobs.quote(aggregator.peerId, header)).toEqual(fake.quoted);
    fake.refuse = new PriceTooLowError("too cheap", 42, { hint: "raise it" });
    try {
      const err = await jobs.quote(aggregator.peerId, header).catch((e: Error) => e);
      expect(err).toBeInstanceOf(PriceTooLowError);
      expect((err as PriceTooLowError).neededMsat).toBe(42);
    } finally {
      fake.refuse = undefined;
    }
    expect(fake.uploads.length).toBe(before);
  });

  test("a shard that does not fit the plan is refused before it is sent", async () => {
    const { header, shards } = job(5, 2, "prompts", prompts);
    const uploads = fake.uploads.length;
    const swapped = [shards[0], shards[2], shards[1]] as Shard[];
    const err = await jobs.submit(aggregator.peerId, header, iterate(swapped)).catch((e: Error) => e);
    expect(err).toMatchObject({ name: "InvalidInputError" });
    expect((err as Error).message).toContain("shard 2 came where shard 1 was due");
    expect(fake.uploads.length).toBe(uploads + 1);
    expect(fake.uploads.at(-1)?.length).toBe(0);
    const fewer = jobs.submit(aggregator.peerId, job(5, 2, "prompts", prompts).header, iterate(shards.slice(0, 2)));
    await expect(fewer).rejects.toThrow("2 of the plan's 3 shards");
    const more = jobs.submit(aggregator.peerId, job(4, 2, "prompts", prompts).header, iterate(shards));
    await expect(more).rejects.toThrow("more than the plan's 2 shards");
  });

  test("an upload while another holds the only slot is refused as busy", async () => {
    let open!: () => void;
    fake.gate = new Promise<void>((resolve) => (open = resolve));
    try {
      const first = job(5, 2, "prompts", prompts);
      const before = fake.uploads.length;
      const holding = jobs.submit(aggregator.peerId, first.header, iterate(first.shards));
      const second = job(5, 2, "prompts", prompts);
      // The first upload holds the slot once the aggregator has begun it.
      expect(await eventually(() => fake.uploads.length > before)).toBe(true);
      const err = await jobs.submit(aggregator.peerId, second.header, iterate(second.shards)).catch((e: Error) => e);
      expect(err).toMatchObject({ name: "RemoteJobError", code: "busy" });
      open();
      expect((await holding).created).toBe(true);
    } finally {
      fake.gate = undefined;
    }
  });
});

describe("watch, output and report", () => {
  let jobId: string;

  beforeAll(async () => {
    const { header, shards } = job(7, 3, "tensor", tensor);
    jobId = (await jobs.submit(aggregator.peerId, header, iterate(shards))).jobId;
  });

  test("watch streams the events and ends after finished", async () => {
    const stored = fake.jobs.get(jobId);
    if (!stored) throw new Error("no job");
    fake.emit(jobId, { type: "progress", job: summary(stored), shards: new Uint8Array([0, 0, 0]) });
    const seen: string[] = [];
    for await (const event of jobs.watch(aggregator.peerId, jobId)) {
      seen.push(`${event.type}:${event.job.shardsVerified}`);
      if (seen.length === 1) {
        expect(event).toEqual({ type: "progress", job: summary(stored), shards: new Uint8Array([0, 0, 0]) });
        fake.emit(jobId, {
          type: "progress",
          job: summary(stored, { shardsVerified: 2 }),
          shards: new Uint8Array([4, 4, 2]),
        });
        const output = { bytes: 10, sha256: SHA, records: 7 };
        fake.emit(jobId, { type: "finished", job: summary(stored, { state: "verified", shardsVerified: 3 }), output });
      }
    }
    expect(seen).toEqual(["progress:0", "progress:2", "finished:3"]);
  });

  test("another peer's job is not found, whichever call asks", async () => {
    const theirs = other.services.job as JobService;
    const watching = (async () => {
      for await (const _ of theirs.watch(aggregator.peerId, jobId)) return "event";
    })();
    await expect(watching).rejects.toMatchObject({ name: "JobNotFoundError" });
    await expect(theirs.report(aggregator.peerId, jobId)).rejects.toMatchObject({ name: "JobNotFoundError" });
    const dest = join(dir, "theirs.jsonl");
    await expect(theirs.fetchOutput(aggregator.peerId, jobId, dest)).rejects.toMatchObject({
      name: "JobNotFoundError",
    });
    expect(existsSync(`${dest}.partial`)).toBe(false);
  });

  test("report returns the aggregator's report", async () => {
    const report = await jobs.report(aggregator.peerId, jobId);
    expect(report.job.id).toBe(jobId);
    expect(report.shards.map((s) => s.count)).toEqual([3, 3, 1]);
  });

  test("fetchOutput resumes a partial file and checks the whole file's sha256", async () => {
    const stored = fake.jobs.get(jobId);
    if (!stored) throw new Error("no job");
    const content = Uint8Array.from({ length: 2 * OUTPUT_CHUNK_BYTES + 12_345 }, (_, i) => (i * 7) % 251);
    const path = join(dir, "merged.jsonl");
    writeFileSync(path, content);
    const sha256 = createHash("sha256").update(content).digest("hex");
    stored.output = { path, bytes: content.byteLength, sha256, records: 7 };

    const dest = join(dir, "out.jsonl");
    const held = OUTPUT_CHUNK_BYTES + 100;
    writeFileSync(`${dest}.partial`, content.subarray(0, held));
    const progress: number[] = [];
    const got = await jobs.fetchOutput(aggregator.peerId, jobId, dest, { onBytes: (n) => progress.push(n) });
    expect(got).toEqual({ bytes: content.byteLength, sha256, records: 7 });
    expect(progress[0]).toBe(held + OUTPUT_CHUNK_BYTES);
    expect(progress.at(-1)).toBe(content.byteLength);
    expect(new Uint8Array(readFileSync(dest))).toEqual(content);
    expect(existsSync(`${dest}.partial`)).toBe(false);

    // A partial file longer than the output: the aggregator starts over.
    writeFileSync(`${dest}.partial`, new Uint8Array(content.byteLength + 10));
    expect((await jobs.fetchOutput(aggregator.peerId, jobId, dest)).sha256).toBe(sha256);
    expect(new Uint8Array(readFileSync(dest))).toEqual(content);

    // A partial file with the wrong bytes, or an aggregator announcing the wrong sha256.
    writeFileSync(`${dest}.partial`, new Uint8Array(held));
    const bad = await jobs.fetchOutput(aggregator.peerId, jobId, dest).catch((e: Error) => e);
    expect(bad).toMatchObject({ name: "IntegrityError" });
    expect(existsSync(`${dest}.partial`)).toBe(false);
    stored.output = { path, bytes: content.byteLength, sha256: SHA, records: 7 };
    const lying = await jobs.fetchOutput(aggregator.peerId, jobId, join(dir, "lie.jsonl")).catch((e: Error) => e);
    expect(lying).toMatchObject({ name: "IntegrityError" });
    expect(existsSync(join(dir, "lie.jsonl.partial"))).toBe(false);
    expect(existsSync(join(dir, "lie.jsonl"))).toBe(false);
  });

  test("the output of an unfinished job is refused as invalid input", async () => {
    const { header, shards } = job(3, 3, "prompts", prompts);
    const { jobId: fresh } = await jobs.submit(aggregator.peerId, header, iterate(shards));
    const err = await jobs.fetchOutput(aggregator.peerId, fresh, join(dir, "x.jsonl")).catch((e: Error) => e);
    expect(err).toMatchObject({ name: "InvalidInputError" });
  });
});

test("a node without an aggregator does not speak the protocol", async () => {
  const err = await (other.services.job as JobService).report(client.peerId, "job-1").catch((e: Error) => e);
  expect(err).toMatchObject({ name: "RemoteJobError", code: "protocol" });
  expect(client.getProtocols()).not.toContain(JOB_PROTOCOL);
  expect(aggregator.getProtocols()).toContain(JOB_PROTOCOL);
});
