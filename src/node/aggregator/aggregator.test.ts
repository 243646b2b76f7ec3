import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { MNIST_DIR, tempDir } from "../../../test/helpers/paths.ts";
import { type Behaviour, MNIST_SHA, SimNetwork } from "../../../test/helpers/sim-network.ts";
import { PriceTooLowError } from "../../jobs/feasibility.ts";
import type { JobSpecInput } from "../../jobs/spec.ts";
import { splitImages } from "../../jobs/split.ts";
import { createOnnxEngine, type OnnxEngine } from "../../runtime/onnx/engine.ts";
import { Store } from "../../store/db.ts";
import { Aggregator } from "./aggregator.ts";
import type { JobEvent } from "./api.ts";
import type { AggregatorNetwork } from "./network.ts";
import { clientPrice, clientRefusal, providerBudget } from "./plan-job.ts";

// The aggregator in one process over a simulated network (test/helpers/sim-network.ts): providers
// are functions that run the real mnist-8 on the real onnxruntime (executeShard, as a provider node
// does) and can be told to misbehave. The same flows over real libp2p processes are in
// test/aggregator.test.ts.

const IMAGES = join(MNIST_DIR, "t10k-images-idx3-ubyte.gz");
const LABELS = gunzipSync(readFileSync(join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz"))).subarray(8);
const CLIENT = "client-peer";

let onnx: OnnxEngine;
beforeAll(() => {
  onnx = createOnnxEngine();
});
afterAll(async () => await onnx?.dispose());

function spec(over: Partial<JobSpecInput> = {}): JobSpecInput {
  return {
    model: { name: "mnist-8", sha256: MNIST_SHA },
    input: { kind: "idx", path: "t10k-images-idx3-ubyte.gz" },
    shardSize: 500,
    redundancy: 2,
    maxPriceMsat: 10_000_000,
    deadlineMs: Date.now() + 600_000,
    idempotencyKey: crypto.randomUUID(),
    ...over,
  };
}

async function submit(agg: Aggregator, s: JobSpecInput, signal = new AbortController().signal, client = CLIENT) {
  await using splitter = await splitImages(IMAGES, { shardSize: s.shardSize ?? 500 });
  return await agg.submit(
    { spec: s as never, plan: splitter.plan, kind: splitter.kind },
    splitter.shards(),
    client,
    signal,
  );
}

async function refusal(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => "accepted",
    (e: Error) => e.name,
  );
}

async function finish(agg: Aggregator, jobId: string): Promise<Extract<JobEvent, { type: "finished" }>> {
  for await (const e of agg.watch(jobId, CLIENT, AbortSignal.timeout(120_000))) if (e.type === "finished") return e;
  throw new Error("the watch ended without finishing");
}

function correct(path: string): { records: number; correct: number; indices: number[] } {
  const lines = readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { index: number; class: number });
  return {
    records: lines.length,
    correct: lines.filter((l) => l.class === LABELS[l.index]).length,
    indices: lines.map((l) => l.index),
  };
}

function aggregator(store: Store, network: AggregatorNetwork, home: string, quietTimeoutMs = 2_000): Aggregator {
  return new Aggregator({
    network,
    store,
    home,
    feePercent: 1,
    quietTimeoutMs,
    firstFrameTimeoutMs: quietTimeoutMs,
    unplaceableGraceMs: 2_000,
  });
}

/**
 * Runs `body` against a started aggregator over a simulated network of `peers` (each "ok" unless
 * `behaviour` says otherwise), on a fresh database; stops it however the test ends.
 */
async function withAggregator(
  peers: string[],
  behaviour: Record<string, Behaviour>,
  body: (agg: Aggregator) => Promise<void>,
): Promise<void> {
  using dir = tempDir();
  using store = Store.open(dir.path);
  const net = new SimNetwork(onnx, peers);
  for (const [peer, b] of Object.entries(behaviour)) net.behaviour.set(peer, b);
  const agg = aggregator(store, net, dir.path);
  agg.start();
  try {
    await body(agg);
  } finally {
    await agg.stop();
  }
}

describe("aggregator over a simulated network", () => {
  test("MNIST 10k, 3 providers, redundancy 2: 9,890 correct in input order, every shard on 2 providers", async () => {
    await withAggregator(["p1", "p2", "p3"], {}, async (agg) => {
      const { jobId, created } = await submit(agg, spec());
      expect(created).toBe(true);
      const done = await finish(agg, jobId);
      expect(done.job.error).toBeUndefined();
      expect(done.job.state).toBe("verified");
      const out = await agg.output(jobId, CLIENT);
      const result = correct(out.path);
      expect(result.records).toBe(10_000);
      expect(result.correct).toBe(9_890);
      expect(result.indices).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
      const report = agg.report(jobId, CLIENT);
      for (const s of report.shards) {
        const verified = s.copies.filter((c) => c.state === "verified").map((c) => c.provider);
        expect(new Set(verified).size).toBe(2);
      }
      // 10,000 records x 2 copies x 10 msat per record, and the 1% fee on top.
      expect(report.cost?.providersMsat).toBe(200_000);
      expect(report.cost?.feeMsat).toBe(2_000);
    });
  }, 120_000);

  test("a provider sending bad results and one going silent lose their copies; the job still completes", async () => {
    await withAggregator(["good1", "good2", "liar", "ghost"], { liar: "bad-result", ghost: "silent" }, async (agg) => {
      const { jobId } = await submit(agg, spec({ shardSize: 1000 }));
      const done = await finish(agg, jobId);
      expect(done.job.state).toBe("verified");
      expect(correct((await agg.output(jobId, CLIENT)).path).correct).toBe(9_890);
      const copies = agg.report(jobId, CLIENT).shards.flatMap((s) => s.copies);
      const of = (p: string) => copies.filter((c) => c.provider === p);
      expect(of("liar").length).toBeGreaterThan(0);
      expect(of("liar").every((c) => c.state === "failed")).toBe(true);
      expect(of("ghost").length).toBeGreaterThan(0);
      // Each of its copies goes for its silence, or with the first one that did ("given up with ghost").
      expect(
        of("ghost").every((c) => c.state === "reassigned" && /sent nothing|given up with/.test(c.reason ?? "")),
      ).toBe(true);
      expect(done.job.retries).toBeGreaterThan(0);
    });
  }, 120_000);

  test("a job waits for a provider paused after going silent, longer than the grace, and completes once it announces again", async () => {
    using dir = tempDir();
    using store = Store.open(dir.path);
    const net = new SimNetwork(onnx, ["p1", "p2"]);
    net.behaviour.set("p2", "silent");
    const agg = aggregator(store, net, dir.path);
    agg.start();
    try {
      const { jobId } = await submit(agg, spec({ shardSize: 1000 }));
      // p2's copies are given up after the quiet timeout (2 s) and p2 stays suspect, so no shard can
      // get its two copies: past the 2 s grace the job still runs.
      await Bun.sleep(6_000);
      expect(agg.report(jobId, CLIENT).job.state).not.toBe("failed");
      net.behaviour.set("p2", "ok");
      net.reannounce("p2");
      const done = await finish(agg, jobId);
      expect(done.job.state).toBe("verified");
      expect(correct((await agg.output(jobId, CLIENT)).path).correct).toBe(9_890);
    } finally {
      await agg.stop();
    }
  }, 120_000);

  test("a provider returning wrong values of the right shape never gets its result verified", async () => {
    await withAggregator(["honest1", "honest2", "liar"], { liar: "wrong" }, async (agg) => {
      const { jobId } = await submit(agg, spec({ shardSize: 1000 }));
      const done = await finish(agg, jobId);
      expect(done.job.state).toBe("verified");
      expect(correct((await agg.output(jobId, CLIENT)).path).correct).toBe(9_890);
      const report = agg.report(jobId, CLIENT);
      const liar = report.shards.flatMap((s) => s.copies).filter((c) => c.provider === "liar");
      expect(liar.every((c) => c.state === "failed")).toBe(true);
      for (const s of report.shards) {
        const verified = s.copies.filter((c) => c.state === "verified").map((c) => c.provider);
        expect(verified.sort()).toEqual(["honest1", "honest2"]);
      }
    });
  }, 120_000);

  test("stopped mid-job and started again on the same database: completes with no gap or duplicate", async () => {
    using dir = tempDir();
    using store = Store.open(dir.path);
    const net = new SimNetwork(onnx, ["p1", "p2"]);
    const first = aggregator(store, net, dir.path);
    first.start();
    const { jobId } = await submit(first, spec({ shardSize: 250 }));
    for await (const e of first.watch(jobId, CLIENT, AbortSignal.timeout(60_000))) {
      if (e.type === "progress" && e.job.shardsVerified >= 5) break;
    }
    await first.stop();
    const second = aggregator(store, net, dir.path);
    second.start();
    try {
      const done = await finish(second, jobId);
      expect(done.job.state).toBe("verified");
      const result = correct((await second.output(jobId, CLIENT)).path);
      expect(result.indices).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
      expect(result.correct).toBe(9_890);
      const report = second.report(jobId, CLIENT);
      expect(report.shards.every((s) => s.copies.filter((c) => c.state === "verified").length === 2)).toBe(true);
    } finally {
      await second.stop();
    }
  }, 120_000);

  test("a resubmission with the same key uploads nothing; another client cannot see the job, and its key is its own", async () => {
    using dir = tempDir();
    using store = Store.open(dir.path);
    // Never started: nothing runs its shards.
    const agg = aggregator(store, new SimNetwork(onnx, ["p1", "p2"]), dir.path);
    const s = spec();
    const { jobId } = await submit(agg, s);
    expect(agg.existing(s as never, CLIENT)).toEqual({ jobId, created: false });
    expect(await submit(agg, s)).toEqual({ jobId, created: false });
    expect(() => agg.existing({ ...s, redundancy: 1 } as never, CLIENT)).toThrow(/already used/);
    expect(() => agg.report(jobId, "someone-else")).toThrow(/no job/);
    // Another client with the same key (same input, same options) gets a job of its own.
    const other = await submit(agg, s, new AbortController().signal, "someone-else");
    expect(other.created).toBe(true);
    expect(other.jobId).not.toBe(jobId);
    await expect(agg.output(jobId, CLIENT)).rejects.toThrow(/not ready/);
  });

  test("refused before the upload: nobody serves the model, the price is too low, the deadline too short", async () => {
    using dir = tempDir();
    using store = Store.open(dir.path);
    const nobody = aggregator(store, new SimNetwork(onnx, []), dir.path);
    expect(await refusal(submit(nobody, spec()))).toBe("ModelNotServedError");
    const pricey = aggregator(store, new SimNetwork(onnx, ["p1", "p2"], { price: 100 }), dir.path);
    expect(await refusal(submit(pricey, spec({ maxPriceMsat: 100 })))).toBe("PriceTooLowError");
    expect(await refusal(submit(pricey, spec({ deadlineMs: Date.now() + 1 })))).toBe("DeadlineTooShortError");
    expect(store.db.query("SELECT count(*) AS n FROM job_uploads").get()).toEqual({ n: 0 });
  });
});

test("a price refusal speaks of the client's price, fee included", () => {
  const err = clientRefusal(new PriceTooLowError("max price 0 msat ...", 200_000), 1, 1);
  expect(err.message).toBe("max price 1 msat is below what the providers ask plus the 1% fee: 202000 msat");
  expect(providerBudget(202_000, 1)).toBeGreaterThanOrEqual(200_000);
  expect(providerBudget(201_999, 1)).toBeLessThan(200_000);
  expect(clientPrice(1, 0.5)).toBe(2);
});
