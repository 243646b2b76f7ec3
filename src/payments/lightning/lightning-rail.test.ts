import { Database } from "bun:sqlite";
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { FakeLnd } from "../../../test/helpers/fake-lnd.ts";
import { tempDir } from "../../../test/helpers/paths.ts";
import { Store } from "../../store/db.ts";
import { msat } from "../amount.ts";
import { SqliteEscrowStore } from "./escrow-store.ts";
import { type EscrowError, LightningRail } from "./lightning-rail.ts";
import type { PaymentFailedError } from "./lnd-errors.ts";
import { LndRest } from "./lnd-rest.ts";

// The aggregator's and the client's nodes are test/helpers/fake-lnd.ts: FAKES of LND's REST API (no
// Lightning node runs here) that pay each other's real BOLT11 hold invoices. The escrow table is a
// real SQLite file.

const QUOTE = msat(21_000_000n);

function setup() {
  const dir = tempDir();
  const aggregatorNode = new FakeLnd();
  const clientNode = new FakeLnd({ registry: aggregatorNode.registry });
  const dbPath = join(dir.path, "escrow.db");
  // The node's own database, its migrations applied: the escrow table is the one a node has.
  const store = Store.openFile(dbPath);
  const { db } = store;
  const lnd = (node: FakeLnd) => new LndRest({ url: node.url, macaroonHex: node.macaroonHex, network: "regtest" });
  const rail = (database = db) =>
    new LightningRail({ lnd: lnd(aggregatorNode), store: new SqliteEscrowStore(database), pollMs: 10 });
  const client = new LightningRail({ lnd: lnd(clientNode), store: new SqliteEscrowStore(db) });
  return {
    aggregatorNode,
    clientNode,
    db,
    dbPath,
    aggregator: rail(),
    rail,
    client,
    [Symbol.asyncDispose]: async () => {
      store.close();
      await aggregatorNode.stop();
      await clientNode.stop();
      dir[Symbol.dispose]();
    },
  };
}

async function rejected(p: Promise<unknown>): Promise<EscrowError & PaymentFailedError> {
  try {
    await p;
  } catch (err) {
    return err as EscrowError & PaymentFailedError;
  }
  throw new Error("expected a rejection");
}

test("escrow: hold, the client pays and waits, the aggregator releases; both see one payment hash", async () => {
  await using t = setup();
  const hold = await t.aggregator.hold("job-1", QUOTE, 600);
  expect(hold.invoice).toStartWith("lnbcrt210u1");
  expect(await t.aggregator.hold("job-1", QUOTE, 600)).toEqual(hold);
  expect((await rejected(t.aggregator.hold("job-1", msat(1_000n), 600))).name).toBe("EscrowError");
  expect((await rejected(t.aggregator.release("job-1"))).message).toContain("not paid yet");

  const clientBefore = t.clientNode.balanceMsat;
  const paying = t.client.pay(hold.invoice, QUOTE, "job-1");
  await t.aggregator.waitFunded("job-1", AbortSignal.timeout(5_000));
  expect(t.aggregatorNode.invoices.get(hold.paymentHash)?.state).toBe("ACCEPTED");

  const receipt = await t.aggregator.release("job-1");
  expect([receipt.rail, receipt.amount, receipt.reference]).toEqual(["lightning", QUOTE, hold.paymentHash]);
  const paid = await paying;
  expect([paid.rail, paid.amount, paid.reference]).toEqual(["lightning", QUOTE, hold.paymentHash]);
  expect(t.clientNode.balanceMsat).toBe(clientBefore - QUOTE - t.clientNode.routingFeeMsat);

  const settles = () => t.aggregatorNode.requests.filter((r) => r.endsWith("/v2/invoices/settle")).length;
  expect(settles()).toBe(1);
  expect(await t.aggregator.release("job-1")).toEqual(receipt);
  expect(settles()).toBe(1);
  expect((await rejected(t.aggregator.refund("job-1"))).message).toContain("cannot be refunded");

  // The preimage that settled it is the one in SQLite, and sha256 of it is the invoice's hash.
  const row = t.db
    .query<{ preimage: string; state: string }, [string]>(
      "SELECT preimage, state FROM lightning_escrow WHERE job_id = ?",
    )
    .get("job-1");
  expect(row?.state).toBe("settled");
  expect(
    createHash("sha256")
      .update(Buffer.from(row?.preimage ?? "", "hex"))
      .digest("hex"),
  ).toBe(hold.paymentHash);
});

test("escrow: refund of a funded hold fails the client's payment back; a refunded hold is never released", async () => {
  await using t = setup();
  const hold = await t.aggregator.hold("job-2", QUOTE, 600);
  const clientBefore = t.clientNode.balanceMsat;
  const paying = rejected(t.client.pay(hold.invoice, QUOTE, "job-2"));
  await t.aggregator.waitFunded("job-2");
  await t.aggregator.refund("job-2");
  const failed = await paying;
  expect([failed.name, failed.failureReason]).toEqual([
    "PaymentFailedError",
    "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS",
  ]);
  expect(t.clientNode.balanceMsat).toBe(clientBefore);
  await t.aggregator.refund("job-2");
  expect((await rejected(t.aggregator.release("job-2"))).message).toContain("refunded");
  expect((await rejected(t.aggregator.waitFunded("job-2"))).message).toContain("cancelled");
});

test("escrow: an unpaid hold refunded at its deadline cannot be paid afterwards", async () => {
  await using t = setup();
  const hold = await t.aggregator.hold("job-3", QUOTE, 600);
  const waiting = rejected(t.aggregator.waitFunded("job-3", AbortSignal.timeout(100)));
  expect((await waiting).name).toBe("TimeoutError");
  await t.aggregator.refund("job-3");
  expect((await rejected(t.client.pay(hold.invoice, QUOTE, "late"))).failureReason).toBe(
    "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS",
  );
});

test("escrow survives a restart (preimage from SQLite) and a crash between storing a hold and issuing it", async () => {
  await using t = setup();
  t.aggregatorNode.override = (_req, path) =>
    path === "/v2/invoices/hodl"
      ? Response.json({ code: 14, message: "connection reset" }, { status: 503 })
      : undefined;
  expect((await rejected(t.aggregator.hold("job-4", QUOTE, 600))).name).toBe("LndError");
  t.aggregatorNode.override = undefined;
  // As if that first request had reached LND and only its answer was lost: the invoice exists there.
  const stored = t.db.query<{ h: string }, []>("SELECT payment_hash AS h FROM lightning_escrow").get()?.h ?? "";
  const direct = new LndRest({
    url: t.aggregatorNode.url,
    macaroonHex: t.aggregatorNode.macaroonHex,
    network: "regtest",
  });
  const first = await direct.addHoldInvoice(stored, QUOTE, "infernet job job-4", 600);
  const hold = await t.aggregator.hold("job-4", QUOTE, 600);
  expect(hold).toEqual({ invoice: first.invoice, paymentHash: stored });
  const paying = t.client.pay(hold.invoice, QUOTE, "job-4");

  const reopened = new Database(t.dbPath, { strict: true });
  const restarted = t.rail(reopened);
  await restarted.waitFunded("job-4");
  expect((await restarted.release("job-4")).reference).toBe(hold.paymentHash);
  expect((await paying).reference).toBe(hold.paymentHash);
  reopened.close();
});

test("pay: keysend to a node public key; refuses a payee that is neither key nor invoice", async () => {
  await using t = setup();
  const before = t.aggregatorNode.balanceMsat;
  const receipt = await t.client.pay(t.aggregatorNode.pubkey, msat(3_000n), "tip");
  expect(receipt.reference).toMatch(/^[0-9a-f]{64}$/);
  expect(t.aggregatorNode.balanceMsat).toBe(before + 3_000n);
  expect(t.aggregatorNode.invoices.get(receipt.reference)?.isKeysend).toBe(true);
  expect((await rejected(t.client.pay("peer-123", msat(3_000n), ""))).name).toBe("InvalidInputError");
  expect(t.client.feeLimit(msat(5_000_000n))).toBe(msat(50_000n));
  expect(t.client.feeLimit(msat(3_000n))).toBe(msat(10_000n));
});
