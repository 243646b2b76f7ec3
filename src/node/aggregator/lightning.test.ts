import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { mnistSpec } from "../../../test/fixtures/jobs.ts";
import { FakeLnd } from "../../../test/helpers/fake-lnd.ts";
import { MNIST_DIR, tempDir } from "../../../test/helpers/paths.ts";
import { SimNetwork } from "../../../test/helpers/sim-network.ts";
import type { JobSpecInput } from "../../jobs/spec.ts";
import { splitImages } from "../../jobs/split.ts";
import { msat } from "../../payments/amount.ts";
import { account } from "../../payments/ledger.ts";
import { SqliteEscrowStore } from "../../payments/lightning/escrow-store.ts";
import { LightningRail } from "../../payments/lightning/lightning-rail.ts";
import { LndRest } from "../../payments/lightning/lnd-rest.ts";
import { createOnnxEngine, type OnnxEngine } from "../../runtime/onnx/engine.ts";
import { Store } from "../../store/db.ts";
import { Aggregator } from "./aggregator.ts";

// Jobs paid with Lightning hold invoices on a real aggregator over the simulated network (real
// mnist-8 on onnxruntime). The aggregator's and the client's Lightning nodes are FAKES of LND's REST
// API (test/helpers/fake-lnd.ts: no Lightning node runs here) that pay each other's real BOLT11
// hold invoices, HTLCs held as ACCEPTED until settled or cancelled.

const IMAGES = join(MNIST_DIR, "t10k-images-idx3-ubyte.gz");
const CLIENT = "client-peer";
const PRICE = 20;
const SHARD = 1_000;
const QUOTE = 2_000_000;

let onnx: OnnxEngine;
beforeAll(() => {
  onnx = createOnnxEngine();
});
afterAll(async () => await onnx?.dispose());

const spec = (over: Partial<JobSpecInput> = {}) =>
  mnistSpec({ shardSize: SHARD, redundancy: 1, maxPriceMsat: QUOTE, ...over });

async function setup(peers: string[]) {
  const dir = tempDir();
  const store = Store.open(dir.path);
  const net = new SimNetwork(onnx, peers, { price: PRICE, reference: true });
  const aggregatorNode = new FakeLnd();
  const clientNode = new FakeLnd({ registry: aggregatorNode.registry });
  const lnd = (n: FakeLnd) => new LndRest({ url: n.url, macaroonHex: n.macaroonHex, network: "regtest" });
  const make = () =>
    new Aggregator({
      network: net,
      store,
      home: dir.path,
      feePercent: 1,
      quietTimeoutMs: 2_000,
      firstFrameTimeoutMs: 2_000,
      unplaceableGraceMs: 2_000,
      escrow: true,
      lightning: new LightningRail({ lnd: lnd(aggregatorNode), store: new SqliteEscrowStore(store.db), pollMs: 10 }),
    });
  // The client pays from its own node; a hold invoice's payment completes only when it is settled.
  const payer = new LightningRail({ lnd: lnd(clientNode), store: new SqliteEscrowStore(store.db) });
  const t = {
    agg: make(),
    make,
    net,
    store,
    aggregatorNode,
    clientNode,
    payer,
    [Symbol.asyncDispose]: async () => {
      await t.agg.stop();
      store.close();
      await aggregatorNode.stop();
      await clientNode.stop();
      dir[Symbol.dispose]();
    },
  };
  return t;
}

/** Quotes with `pay: "lightning"`, pays the hold invoice from the client's node, submits. */
async function payAndSubmit(t: Awaited<ReturnType<typeof setup>>, s: JobSpecInput) {
  await using splitter = await splitImages(IMAGES, { shardSize: s.shardSize ?? SHARD });
  const header = { spec: s as never, plan: splitter.plan, kind: splitter.kind, pay: "lightning" as const };
  const quote = await t.agg.quote(header, CLIENT, new AbortController().signal);
  if (!quote.invoice) throw new Error("no invoice in the quote");
  const paying = t.payer.pay(quote.invoice, msat(quote.lockedMsat), "job").then(
    (r) => ({ ok: true as const, r }),
    (err: Error) => ({ ok: false as const, err }),
  );
  const { jobId } = await t.agg.submit(header, splitter.shards(), CLIENT, new AbortController().signal, quote);
  return { jobId, quote, paying };
}

async function finished(agg: Aggregator, jobId: string) {
  for await (const e of agg.watch(jobId, CLIENT, AbortSignal.timeout(60_000))) if (e.type === "finished") return e;
  throw new Error("no end");
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await Bun.sleep(20);
  }
}

test("a job paid with a hold invoice: funded before it starts, settled once it ends, the unspent part stays credit", async () => {
  await using t = await setup(["p1", "p2"]);
  t.agg.start();
  const books = t.agg.payments;
  if (!books) throw new Error("escrow is on");
  const before = t.aggregatorNode.balanceMsat;
  const { jobId, quote, paying } = await payAndSubmit(t, spec());
  expect(quote.lockedMsat).toBe(BigInt(QUOTE));
  expect(books.escrow.escrowed(jobId)).toBe(msat(QUOTE));
  expect((await finished(t.agg, jobId)).job.state).toBe("verified");
  const paid = await paying;
  expect(paid.ok).toBe(true);
  // The whole hold moved; the job cost what its copies earned plus the fee; the rest is credit here.
  expect(t.aggregatorNode.balanceMsat).toBe(before + BigInt(QUOTE));
  const cost = t.agg.report(jobId, CLIENT).cost;
  const spent = (cost?.providersMsat ?? 0) + (cost?.feeMsat ?? 0);
  expect(spent).toBeGreaterThan(0);
  expect(books.escrow.credit(CLIENT)).toBe(msat(QUOTE - spent));
  expect(-books.ledger.balanceOf(account("outside", "lightning"))).toBe(BigInt(QUOTE));
  books.check();
});

test("a job that pays nothing (every provider silent, the deadline passes): the hold is cancelled, the client keeps all", async () => {
  await using t = await setup(["p1"]);
  t.net.behaviour.set("p1", "silent");
  t.agg.start();
  const books = t.agg.payments;
  if (!books) throw new Error("escrow is on");
  const before = t.clientNode.balanceMsat;
  const { jobId, paying } = await payAndSubmit(t, spec({ deadlineMs: Date.now() + 3_000 }));
  expect((await finished(t.agg, jobId)).job.state).toBe("failed");
  const paid = await paying;
  expect(paid.ok).toBe(false);
  await until("the hold cancelled", () => t.clientNode.balanceMsat === before);
  expect(books.escrow.credit(CLIENT)).toBe(msat(0));
  expect(books.ledger.balanceOf(account("outside", "lightning"))).toBe(0n);
  expect(books.ledger.txns({ jobId, reason: "release" })).toHaveLength(0);
  books.check();
});

test("Lightning is refused where the aggregator has none, and for a deadline past a held payment's life", async () => {
  await using t = await setup(["p1"]);
  t.agg.start();
  await using splitter = await splitImages(IMAGES, { shardSize: SHARD });
  const far = {
    spec: spec({ deadlineMs: Date.now() + 7 * 3_600_000 }) as never,
    plan: splitter.plan,
    kind: splitter.kind,
  };
  await expect(t.agg.quote({ ...far, pay: "lightning" }, CLIENT, new AbortController().signal)).rejects.toThrow(
    "must end within 6 hours",
  );
  const none = new Aggregator({ network: t.net, store: t.store, home: "/nonexistent", feePercent: 1, escrow: true });
  const near = { ...far, spec: spec() as never, pay: "lightning" as const };
  await expect(none.quote(near, CLIENT, new AbortController().signal)).rejects.toThrow("takes no Lightning payment");
});

test("the aggregator stopped mid-job and started again on its database: the hold is settled once, the books exact", async () => {
  await using t = await setup(["p1", "p2"]);
  t.agg.start();
  const before = t.aggregatorNode.balanceMsat;
  const { jobId, paying } = await payAndSubmit(t, spec({ shardSize: 500 }));
  await until("a copy paid", () => (t.agg.payments?.ledger.txns({ jobId, reason: "release" }).length ?? 0) > 0);
  await t.agg.stop();
  t.agg = t.make();
  t.agg.start();
  expect((await finished(t.agg, jobId)).job.state).toBe("verified");
  expect((await paying).ok).toBe(true);
  expect(t.aggregatorNode.balanceMsat).toBe(before + BigInt(QUOTE));
  const books = t.agg.payments;
  const cost = t.agg.report(jobId, CLIENT).cost;
  expect(books?.escrow.credit(CLIENT)).toBe(msat(QUOTE - (cost?.providersMsat ?? 0) - (cost?.feeMsat ?? 0)));
  // The client's payment completes as the node settles; the hold's row says so just after.
  const holds = () => t.store.db.query<{ state: string }, []>("SELECT state FROM lightning_escrow").all();
  await until("the hold recorded as settled", () => holds()[0]?.state === "settled");
  expect(holds()).toEqual([{ state: "settled" }]);
  books?.check();
});
