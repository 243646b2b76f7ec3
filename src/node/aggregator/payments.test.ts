import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { MNIST_DIR, tempDir } from "../../../test/helpers/paths.ts";
import { SimNetwork } from "../../../test/helpers/sim-network.ts";
import type { JobSpecInput } from "../../jobs/spec.ts";
import { splitImages } from "../../jobs/split.ts";
import { msat } from "../../payments/amount.ts";
import { FULL_BPS, REPUTATION_FLOOR_BPS, speedBps } from "../../payments/earnings.ts";
import { account } from "../../payments/ledger.ts";
import { createOnnxEngine, type OnnxEngine } from "../../runtime/onnx/engine.ts";
import { Store } from "../../store/db.ts";
import { Aggregator } from "./aggregator.ts";

// Escrow on a real aggregator over the simulated network (test/helpers/sim-network.ts: real mnist-8
// on the real onnxruntime): the quote locked with the job, each verified copy paid, a cheater's
// releases clawed back and its bond forfeited, the rest refunded; the books checked all along.
// Money arrives here by direct deposits into the ledger; over real channels in test/payments.test.ts.

const IMAGES = join(MNIST_DIR, "t10k-images-idx3-ubyte.gz");
const CLIENT = "client-peer";
/** sats per 1,000 records: 20 msat a record. */
const PRICE = 20;
const SHARD = 500;
const FEE_PERCENT = 1;
const QUOTE = 10_000_000;

let onnx: OnnxEngine;
beforeAll(() => {
  onnx = createOnnxEngine();
});
afterAll(async () => await onnx?.dispose());

function spec(over: Partial<JobSpecInput> = {}): JobSpecInput {
  return {
    model: { name: "mnist-8", sha256: "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf" },
    input: { kind: "idx", path: "t10k-images-idx3-ubyte.gz" },
    shardSize: SHARD,
    redundancy: 2,
    maxPriceMsat: QUOTE,
    deadlineMs: Date.now() + 600_000,
    idempotencyKey: crypto.randomUUID(),
    ...over,
  };
}

async function submit(agg: Aggregator, s: JobSpecInput) {
  await using splitter = await splitImages(IMAGES, { shardSize: SHARD });
  return await agg.submit(
    { spec: s as never, plan: splitter.plan, kind: splitter.kind },
    splitter.shards(),
    CLIENT,
    new AbortController().signal,
  );
}

async function finish(agg: Aggregator, jobId: string) {
  for await (const e of agg.watch(jobId, CLIENT, AbortSignal.timeout(120_000))) if (e.type === "finished") return e;
  throw new Error("the watch ended without finishing");
}

function setup(peers: string[], minBondMsat?: number) {
  const dir = tempDir();
  const store = Store.open(dir.path);
  const net = new SimNetwork(onnx, peers, { price: PRICE, reference: true });
  const make = () =>
    new Aggregator({
      network: net,
      store,
      home: dir.path,
      feePercent: FEE_PERCENT,
      quietTimeoutMs: 2_000,
      firstFrameTimeoutMs: 2_000,
      unplaceableGraceMs: 2_000,
      escrow: true,
      ...(minBondMsat !== undefined ? { minBondMsat: msat(minBondMsat) } : {}),
    });
  return {
    dir,
    store,
    net,
    make,
    [Symbol.dispose]: () => {
      store.close();
      dir[Symbol.dispose]();
    },
  };
}

/** Checks the books every few milliseconds while `body` runs: the invariants hold at every step. */
async function audited<T>(agg: Aggregator, body: () => Promise<T>): Promise<{ value: T; audits: number }> {
  let audits = 0;
  const timer = setInterval(() => {
    agg.payments?.check();
    audits++;
  }, 5);
  try {
    const value = await body();
    agg.payments?.check();
    return { value, audits: audits + 1 };
  } finally {
    clearInterval(timer);
  }
}

/** The job's verified copies as paid: provider, shard, the share of the price earned, lease-to-return time. */
function earnedCopies(store: Store, jobId: string) {
  return store.db
    .query<{ provider: string; shard: number; bps: number | null; wallMs: number }, [string]>(
      `SELECT provider, shard_id AS shard, earn_bps AS bps, returned_at - leased_at AS wallMs
       FROM assignments WHERE job_id = ? AND state = 'verified'`,
    )
    .all(jobId)
    .map((c) => ({ ...c, bps: c.bps ?? FULL_BPS }));
}

/** Verified copies by provider, read from the job's report (what is owed by hand). */
function verifiedCopies(agg: Aggregator, jobId: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const c of agg.report(jobId, CLIENT).shards.flatMap((s) => s.copies)) {
    if (c.state === "verified") out.set(c.provider, (out.get(c.provider) ?? 0) + 1);
  }
  return out;
}

describe("escrow on the aggregator", () => {
  test("honest providers earn exactly their verified copies, a cheater loses its releases and its bond, the client gets the rest", async () => {
    using s = setup(["p1", "p2", "p3", "cheat"]);
    const agg = s.make();
    const books = agg.payments;
    if (!books) throw new Error("escrow is on");
    const deposit = 12_000_000;
    const bond = 50_000;
    books.escrow.deposit(CLIENT, msat(deposit), "channel", "client-channel:1");
    for (const p of ["p1", "p2", "p3", "cheat"]) books.escrow.postBond(p, msat(bond), "channel", `${p}-bond:1`);
    agg.start();
    try {
      const { value: done, audits } = await audited(agg, async () => {
        const { jobId } = await submit(agg, spec());
        expect(books.escrow.escrowed(jobId)).toBe(msat(QUOTE));
        expect(books.escrow.credit(CLIENT)).toBe(msat(deposit - QUOTE));
        // The cheater is honest until one of its copies was verified and paid, then lies on every record.
        const paid = AbortSignal.timeout(60_000);
        while (books.escrow.earnings("cheat") === 0n) {
          if (paid.aborted) throw new Error("the cheater never got a copy verified");
          await Bun.sleep(5);
        }
        // While the job runs, what it released stays held (a conviction could claw it back).
        expect(books.payable().get("cheat")).toBeUndefined();
        s.net.lie("cheat", { rate: 1, seed: "cheat" });
        return { jobId, event: await finish(agg, jobId) };
      });
      expect(done.event.job.state).toBe("verified");
      expect(audits).toBeGreaterThan(10);
      const { jobId } = done;
      const copies = verifiedCopies(agg, jobId);
      expect(copies.get("cheat")).toBeUndefined();

      // By hand: a copy is 500 records at 20 msat = 10,000 msat, times its earnings multipliers
      // (payments/earnings.ts) rounded down; the fee is 1% of what it earned, rounded up.
      const copyMsat = SHARD * PRICE;
      const paid = earnedCopies(s.store, jobId);
      expect(paid.length).toBe([...copies.values()].reduce((a, b) => a + b, 0));
      const byProvider = new Map<string, number>();
      let fees = 0;
      for (const c of paid) {
        // Speed against the fastest verified copy of the shard, as recorded; reputation at most 10%.
        const speed = speedBps(c.wallMs, Math.min(...paid.filter((o) => o.shard === c.shard).map((o) => o.wallMs)));
        expect(c.bps).toBeLessThanOrEqual(speed);
        expect(c.bps).toBeGreaterThanOrEqual(Math.floor((speed * REPUTATION_FLOOR_BPS) / FULL_BPS));
        const earned = Math.floor((copyMsat * c.bps) / FULL_BPS);
        byProvider.set(c.provider, (byProvider.get(c.provider) ?? 0) + earned);
        fees += Math.ceil((earned * FEE_PERCENT) / 100);
      }
      let total = 0;
      for (const p of ["p1", "p2", "p3"]) {
        expect(books.escrow.earnings(p)).toBe(msat(byProvider.get(p) ?? 0));
        expect(books.escrow.bond(p)).toBe(msat(bond));
        total += copies.get(p) ?? 0;
      }
      const earnedTotal = [...byProvider.values()].reduce((a, b) => a + b, 0);
      // Every shard at least once (adaptive replication gives trusted providers' shards fewer copies).
      expect(total).toBeGreaterThanOrEqual(10_000 / SHARD);
      expect(books.ledger.balance(account("fees"))).toBe(msat(fees));
      expect(books.escrow.earnings("cheat")).toBe(msat(0));
      expect(books.escrow.bond("cheat")).toBe(msat(0));
      expect(books.ledger.balance(account("forfeits"))).toBe(msat(bond));
      expect(books.ledger.txns({ reason: "forfeit" }).some((t) => t.idem.startsWith("clawback:"))).toBe(true);
      // The refund comes on the next tick after the job ends.
      const refunded = AbortSignal.timeout(5_000);
      while (books.escrow.escrowed(jobId) > 0n && !refunded.aborted) await Bun.sleep(20);
      expect(books.escrow.escrowed(jobId)).toBe(msat(0));
      expect(books.escrow.credit(CLIENT)).toBe(msat(deposit - earnedTotal - fees));
      // The job ended: every honest provider's earnings may be paid out now.
      const payable = books.payable();
      for (const p of ["p1", "p2", "p3"]) expect(payable.get(p)).toBe(msat(byProvider.get(p) ?? 0));
      expect(payable.has("cheat")).toBe(false);
      // The report says what the ledger paid.
      const cost = agg.report(jobId, CLIENT).cost;
      expect(cost?.providersMsat).toBe(earnedTotal);
      expect(cost?.feeMsat).toBe(fees);
      const penalties =
        agg.store.jobs && s.store.db.query("SELECT applied_at FROM penalties WHERE provider = 'cheat'").all();
      expect(penalties.length).toBeGreaterThan(0);
      books.check();
    } finally {
      await agg.stop();
    }
  });

  test("a client whose credit does not cover the quote is refused before the upload; nothing is stored or locked", async () => {
    using s = setup(["p1", "p2"]);
    const agg = s.make();
    agg.payments?.escrow.deposit(CLIENT, msat(QUOTE - 1), "channel", "c:1");
    agg.start();
    try {
      const refused = await submit(agg, spec()).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(refused?.name).toBe("InsufficientFundsError");
      expect(refused?.message).toContain("10,000 sat");
      expect(s.store.db.query("SELECT count(*) AS n FROM jobs").get()).toEqual({ n: 0 });
      expect(agg.payments?.escrow.credit(CLIENT)).toBe(msat(QUOTE - 1));
    } finally {
      await agg.stop();
    }
  });

  test("a job that fails (its deadline passes) refunds its whole escrow; a restarted aggregator pays nothing twice", async () => {
    using s = setup(["p1", "p2"]);
    s.net.behaviour.set("p1", "silent");
    s.net.behaviour.set("p2", "silent");
    let agg = s.make();
    agg.payments?.escrow.deposit(CLIENT, msat(QUOTE), "channel", "c:1");
    agg.start();
    const { jobId } = await submit(agg, spec({ deadlineMs: Date.now() + 3_000 }));
    expect(agg.payments?.escrow.credit(CLIENT)).toBe(msat(0));
    await agg.stop();
    // Restarted on the same database after the deadline: the job fails and the escrow comes back, once.
    await Bun.sleep(3_100);
    agg = s.make();
    agg.start();
    try {
      expect((await finish(agg, jobId)).job.state).toBe("failed");
      const back = AbortSignal.timeout(5_000);
      while (agg.payments?.escrow.escrowed(jobId) !== 0n && !back.aborted) await Bun.sleep(20);
      expect(agg.payments?.escrow.credit(CLIENT)).toBe(msat(QUOTE));
      expect(agg.payments?.ledger.txns({ jobId, reason: "refund" })).toHaveLength(1);
      agg.payments?.check();
    } finally {
      await agg.stop();
    }
  });

  test("with a minimum bond, a provider below it gets no copies and is not counted in the quote", async () => {
    const bond = 5_000;
    using s = setup(["p1", "p2", "p3"], bond);
    const agg = s.make();
    const books = agg.payments;
    if (!books) throw new Error("escrow is on");
    books.escrow.deposit(CLIENT, msat(QUOTE), "channel", "c:1");
    books.escrow.postBond("p1", msat(bond), "channel", "p1-bond:1");
    books.escrow.postBond("p2", msat(bond), "channel", "p2-bond:1");
    books.escrow.postBond("p3", msat(bond - 1), "channel", "p3-bond:1");
    agg.start();
    try {
      await using splitter = await splitImages(IMAGES, { shardSize: SHARD });
      const header = { spec: spec() as never, plan: splitter.plan, kind: splitter.kind };
      expect((await agg.quote(header, CLIENT, new AbortController().signal)).providers).toBe(2);
      const { jobId } = await submit(agg, spec());
      expect((await finish(agg, jobId)).job.state).toBe("verified");
      const placed = s.store.db
        .query<{ provider: string }, [string]>("SELECT DISTINCT provider FROM assignments WHERE job_id = ?")
        .all(jobId)
        .map((r) => r.provider)
        .sort();
      expect(placed).toEqual(["p1", "p2"]);
      expect(books.escrow.earnings("p3")).toBe(msat(0));
      books.check();
    } finally {
      await agg.stop();
    }
  });
});
