import { expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { FakeLnd, type FakeLndRegistry } from "../../../test/helpers/fake-lnd.ts";
import { tempDir } from "../../../test/helpers/paths.ts";
import { msat } from "../amount.ts";
import type { ChainNetwork } from "../chain/network.ts";
import type { LndError, PaymentFailedError } from "./lnd-errors.ts";
import { LndRest } from "./lnd-rest.ts";
import { MAX_LND_ANSWER_BYTES } from "./lnd-wire.ts";

// Every test here talks to test/helpers/fake-lnd.ts, a FAKE of LND's REST API (no LND runs here)
// that speaks its wire format and issues real signed BOLT11 invoices.

const sha256 = (hex: string) => createHash("sha256").update(Buffer.from(hex, "hex")).digest("hex");
const SATS_5000 = msat(5_000_000n);
const FEE = msat(10_000n);

function pair(network: ChainNetwork = "regtest") {
  const registry: FakeLndRegistry = new Map();
  const alice = new FakeLnd({ registry, network });
  const bob = new FakeLnd({ registry, network });
  const client = (node: FakeLnd, net = network) =>
    new LndRest({ url: node.url, macaroonHex: node.macaroonHex, network: net });
  return {
    alice,
    bob,
    a: client(alice),
    b: client(bob),
    client,
    [Symbol.asyncDispose]: async () => {
      await alice.stop();
      await bob.stop();
    },
  };
}

async function rejected(p: Promise<unknown>): Promise<LndError & PaymentFailedError> {
  try {
    await p;
  } catch (err) {
    return err as LndError & PaymentFailedError;
  }
  throw new Error("expected a rejection");
}

test("getinfo; a plain invoice paid from one node to another, preimage checked, balances moved", async () => {
  await using net = pair();
  const info = await net.a.getInfo();
  expect([info.pubkey, info.network, info.syncedToChain]).toEqual([net.alice.pubkey, "regtest", true]);
  expect((await net.a.assertNetwork()).pubkey).toBe(net.alice.pubkey);
  expect((await rejected(net.client(net.alice, "signet").assertNetwork())).name).toBe("ConfigError");

  const issued = await net.b.addInvoice(SATS_5000, "job 1", 600);
  expect(issued.invoice).toStartWith("lnbcrt50u1");
  const before = [net.alice.balanceMsat, net.bob.balanceMsat];
  const paid = await net.a.payInvoice(issued.invoice, SATS_5000, FEE);
  expect(paid.paymentHash).toBe(issued.paymentHash);
  expect(sha256(paid.preimage)).toBe(issued.paymentHash);
  expect([paid.amount, paid.fee]).toEqual([SATS_5000, 1_000n as typeof paid.fee]);
  expect([net.alice.balanceMsat, net.bob.balanceMsat]).toEqual([
    (before[0] as bigint) - 5_001_000n,
    (before[1] as bigint) + 5_000_000n,
  ]);
  const inv = await net.b.lookupInvoice(issued.paymentHash);
  expect([inv?.state, inv?.amountPaid, inv?.preimage]).toEqual(["SETTLED", SATS_5000, paid.preimage]);
  expect(await net.b.lookupInvoice("00".repeat(32))).toBeUndefined();

  const twice = await rejected(net.a.payInvoice(issued.invoice, SATS_5000, FEE));
  expect([twice.name, twice.grpcCode, twice.status]).toEqual(["LndError", 6, 409]);
});

test("hold invoice: paid it stays ACCEPTED and the payer waits; settled, the payer gets the preimage", async () => {
  await using net = pair();
  const preimage = randomBytes(32).toString("hex");
  const hash = sha256(preimage);
  const { invoice } = await net.b.addHoldInvoice(hash, SATS_5000, "escrow", 600);
  expect((await net.b.lookupInvoice(hash))?.state).toBe("OPEN");
  expect((await rejected(net.b.settleHoldInvoice(preimage))).message).toContain("invoice still open");

  let done = false;
  const paying = net.a.payInvoice(invoice, SATS_5000, FEE).finally(() => {
    done = true;
  });
  for (let i = 0; i < 100 && (await net.b.lookupInvoice(hash))?.state !== "ACCEPTED"; i++) await Bun.sleep(10);
  expect((await net.b.lookupInvoice(hash))?.state).toBe("ACCEPTED");
  await Bun.sleep(50);
  expect(done).toBe(false);

  const wrong = await rejected(net.b.settleHoldInvoice(randomBytes(32).toString("hex")));
  expect([wrong.name, wrong.status, wrong.grpcCode]).toEqual(["LndError", 500, 2]);
  expect(wrong.message).toContain("unable to locate invoice");
  expect(done).toBe(false);

  await net.b.settleHoldInvoice(preimage);
  expect((await paying).preimage).toBe(preimage);
  const settled = await net.b.lookupInvoice(hash);
  expect([settled?.state, settled?.preimage]).toEqual(["SETTLED", preimage]);
  await net.b.settleHoldInvoice(preimage); // LND answers a repeated settle with success
  expect((await rejected(net.b.cancelHoldInvoice(hash))).message).toContain("already settled");
});

test("hold invoice cancelled: the payment fails back and the payer's balance returns", async () => {
  await using net = pair();
  const hash = sha256(randomBytes(32).toString("hex"));
  const { invoice } = await net.b.addHoldInvoice(hash, SATS_5000, "escrow", 600);
  const before = net.alice.balanceMsat;
  const paying = rejected(net.a.payInvoice(invoice, SATS_5000, FEE));
  for (let i = 0; i < 100 && (await net.b.lookupInvoice(hash))?.state !== "ACCEPTED"; i++) await Bun.sleep(10);
  expect(net.alice.balanceMsat).toBe(before - 5_001_000n);
  await net.b.cancelHoldInvoice(hash);
  const failed = await paying;
  expect([failed.name, failed.failureReason]).toEqual([
    "PaymentFailedError",
    "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS",
  ]);
  expect(net.alice.balanceMsat).toBe(before);
  expect((await net.b.lookupInvoice(hash))?.state).toBe("CANCELED");
});

test("keysend: the preimage in record 5482373484 settles a keysend invoice at the payee", async () => {
  await using net = pair();
  const paid = await net.a.keysend(net.bob.pubkey, SATS_5000, FEE);
  expect(sha256(paid.preimage)).toBe(paid.paymentHash);
  const inv = await net.b.lookupInvoice(paid.paymentHash);
  expect([inv?.state, inv?.isKeysend, inv?.amountPaid]).toEqual(["SETTLED", true, SATS_5000]);

  net.bob.acceptKeysend = false;
  const refused = await rejected(net.a.keysend(net.bob.pubkey, SATS_5000, FEE));
  expect(refused.failureReason).toBe("FAILURE_REASON_INCORRECT_PAYMENT_DETAILS");
  const nobody = await rejected(net.a.keysend(`02${"11".repeat(32)}`, SATS_5000, FEE));
  expect(nobody.failureReason).toBe("FAILURE_REASON_NO_ROUTE");
  const overFee = await rejected(net.a.keysend(net.bob.pubkey, SATS_5000, msat(999n)));
  expect(overFee.failureReason).toBe("FAILURE_REASON_NO_ROUTE");
});

test("a bad or missing macaroon is refused with a hint", async () => {
  await using net = pair();
  const wrong = new LndRest({ url: net.alice.url, macaroonHex: "ab".repeat(40), network: "regtest" });
  const err = await rejected(wrong.getInfo());
  expect([err.name, err.status, err.grpcCode]).toEqual(["LndError", 500, 2]);
  expect(err.message).toContain("verification failed");
  expect(err.hint).toContain("macaroon");
  const bare = await fetch(`${net.alice.url}/v1/getinfo`);
  expect([bare.status, ((await bare.json()) as { message: string }).message]).toEqual([
    500,
    "expected 1 macaroon, got 0",
  ]);
  net.alice.override = (req) => {
    expect(req.headers.get("grpc-metadata-macaroon")).toBe(net.alice.macaroonHex);
    return undefined;
  };
  await net.a.getInfo();
});

test("malformed answers: bad JSON, wrong shape, oversized bodies and stream lines, a lying preimage", async () => {
  await using net = pair();
  net.alice.override = (_r, path) => (path === "/v1/getinfo" ? new Response("{oops") : undefined);
  expect((await rejected(net.a.getInfo())).reason).toBe("json");
  net.alice.override = (_r, path) => (path === "/v1/getinfo" ? Response.json({ identity_pubkey: 7 }) : undefined);
  expect((await rejected(net.a.getInfo())).reason).toBe("shape");
  net.alice.override = () => new Response("x".repeat(MAX_LND_ANSWER_BYTES + 1));
  expect((await rejected(net.a.getInfo())).reason).toBe("too-large");
  net.alice.override = () => new Response("<html>bad gateway</html>", { status: 502 });
  const gateway = await rejected(net.a.getInfo());
  expect([gateway.reason, gateway.status]).toEqual(["http", 502]);

  const { invoice, paymentHash } = await net.b.addInvoice(SATS_5000, "x", 600);
  const streamed = (body: string) => () => new Response(body);
  net.alice.override = streamed("{not json\n");
  expect((await rejected(net.a.payInvoice(invoice, SATS_5000, FEE))).reason).toBe("json");
  net.alice.override = () =>
    new Response(
      new ReadableStream({
        pull(c) {
          c.enqueue(new Uint8Array(256 * 1024).fill(0x20));
        },
      }),
    );
  expect((await rejected(net.a.payInvoice(invoice, SATS_5000, FEE))).reason).toBe("too-large");
  const lie = {
    payment_hash: paymentHash,
    payment_preimage: "11".repeat(32),
    value_msat: "5000000",
    fee_msat: "0",
    status: "SUCCEEDED",
    failure_reason: "FAILURE_REASON_NONE",
  };
  net.alice.override = streamed(`${JSON.stringify({ result: lie })}\n`);
  expect((await rejected(net.a.payInvoice(invoice, SATS_5000, FEE))).message).toContain("does not match its hash");
  net.alice.override = streamed(`${JSON.stringify({ error: { code: 2, message: "boom", details: [] } })}\n`);
  expect((await rejected(net.a.payInvoice(invoice, SATS_5000, FEE))).message).toContain("boom");
  net.alice.override = streamed("");
  expect((await rejected(net.a.payInvoice(invoice, SATS_5000, FEE))).hint).toContain("may still complete");
  net.alice.override = undefined;
  expect((await net.a.payInvoice(invoice, SATS_5000, FEE)).paymentHash).toBe(paymentHash);
});

test("over TLS with LND's kind of self-signed certificate: trusted when given, refused when not", async () => {
  const openssl = Bun.which("openssl");
  if (!openssl) return; // A certificate needs openssl (installed here); without it only plain HTTP is tested.
  using dir = tempDir();
  const made = Bun.spawnSync([
    openssl,
    ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"],
    ...["-keyout", join(dir.path, "tls.key"), "-out", join(dir.path, "tls.cert"), "-subj", "/CN=localhost"],
    ...["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
  ]);
  expect(made.exitCode).toBe(0);
  const cert = readFileSync(join(dir.path, "tls.cert"), "utf8");
  await using node = new FakeLnd({ tls: { cert, key: readFileSync(join(dir.path, "tls.key"), "utf8") } });
  expect(node.url).toStartWith("https://");
  const trusting = new LndRest({ url: node.url, macaroonHex: node.macaroonHex, network: "regtest", tlsCertPem: cert });
  expect((await trusting.getInfo()).pubkey).toBe(node.pubkey);
  const blind = new LndRest({ url: node.url, macaroonHex: node.macaroonHex, network: "regtest" });
  expect((await rejected(blind.getInfo())).reason).toBe("unreachable");
});
