import { expect, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import * as bolt11 from "bolt11";
import { FakeLnd } from "../../../test/helpers/fake-lnd.ts";
import { msat } from "../amount.ts";
import { checkInvoice, decodeInvoice, type InvoiceError } from "./invoice.ts";
import { LndRest } from "./lnd-rest.ts";

// Invoices here are real BOLT11 strings signed by test/helpers/fake-lnd.ts's node key (a FAKE of LND:
// no Lightning node runs here); the checks under test are ours.

const hash = () => createHash("sha256").update(randomBytes(32)).digest("hex");
const AMOUNT = msat(2_500_000n);

function refusal(f: () => unknown): InvoiceError {
  try {
    f();
  } catch (err) {
    return err as InvoiceError;
  }
  throw new Error("expected a refusal");
}

test("a good invoice decodes with its hash, amount, payee and expiry", async () => {
  await using node = new FakeLnd();
  const h = hash();
  const invoice = node.encodeInvoice(h, 2_500_000n, "job 9", 600);
  const inv = checkInvoice(invoice.toUpperCase(), { network: "regtest", amount: AMOUNT, payee: node.pubkey });
  expect([inv.paymentHash, inv.amount, inv.payee, inv.description]).toEqual([h, AMOUNT, node.pubkey, "job 9"]);
  expect(inv.expiresAt - inv.timestamp).toBe(600);
  expect(decodeInvoice(`lightning:${invoice}`, "regtest").paymentHash).toBe(h);
});

test("expired, wrong network, wrong or missing amount are refused, each with its reason", async () => {
  await using node = new FakeLnd();
  await using signet = new FakeLnd({ network: "signet" });
  const old = node.encodeInvoice(hash(), 2_500_000n, "", 60, Math.floor(Date.now() / 1000) - 61);
  expect(refusal(() => checkInvoice(old, { network: "regtest", amount: AMOUNT })).reason).toBe("expired");

  const signetInvoice = signet.encodeInvoice(hash(), 2_500_000n, "", 600);
  expect(signetInvoice).toStartWith("lntbs");
  expect(checkInvoice(signetInvoice, { network: "signet", amount: AMOUNT }).network).toBe("signet");
  const wrongNet = refusal(() => checkInvoice(signetInvoice, { network: "regtest", amount: AMOUNT }));
  expect([wrongNet.reason, wrongNet.message]).toEqual(["network", "this invoice is for signet, not regtest"]);
  const onMainnet = refusal(() =>
    checkInvoice(node.encodeInvoice(hash(), 1n, "", 600), { network: "mainnet", amount: AMOUNT }),
  );
  expect(onMainnet.reason).toBe("network");

  const good = node.encodeInvoice(hash(), 2_500_000n, "", 600);
  const tooLittle = refusal(() => checkInvoice(good, { network: "regtest", amount: msat(2_400_000n) }));
  expect([tooLittle.reason, tooLittle.message]).toEqual(["amount", expect.stringContaining("not the agreed 2400000")]);
  const open = node.encodeInvoice(hash(), 0n, "", 600);
  expect(refusal(() => checkInvoice(open, { network: "regtest", amount: AMOUNT })).reason).toBe("amount");
});

test("tampered invoices: a changed character, a re-checksummed amount, a high-S signature", async () => {
  await using node = new FakeLnd();
  const invoice = node.encodeInvoice(hash(), 2_500_000n, "", 600);
  const flipped = `${invoice.slice(0, 20)}${invoice[20] === "q" ? "p" : "q"}${invoice.slice(21)}`;
  const broken = refusal(() => checkInvoice(flipped, { network: "regtest", amount: AMOUNT }));
  expect([broken.name, broken.reason, broken.message]).toEqual([
    "InvoiceError",
    "malformed",
    expect.stringContaining("checksum"),
  ]);

  // A valid checksum over a larger amount: the signature now recovers some other key than the node's.
  const bigger = reChecksummed(invoice, "lnbcrt50u");
  const raised = refusal(() =>
    checkInvoice(bigger, { network: "regtest", amount: msat(5_000_000n), payee: node.pubkey }),
  );
  expect(raised.reason).toBe("signature");
  await using tagged = new FakeLnd({ payeeKeyTag: true });
  const withKey = reChecksummed(tagged.encodeInvoice(hash(), 2_500_000n, "", 600), "lnbcrt50u");
  expect(refusal(() => checkInvoice(withKey, { network: "regtest", amount: msat(5_000_000n) })).reason).toBe(
    "signature",
  );

  // (r, n - s) is the same signature for the same key, malleated: BOLT11 readers should reject high S.
  const d = bolt11.decode(invoice);
  const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
  const s = BigInt(`0x${(d.signature as string).slice(64)}`);
  const highS = `${(d.signature as string).slice(0, 64)}${(n - s).toString(16).padStart(64, "0")}`;
  const malleated = bolt11.encode({ ...d, signature: highS, recoveryFlag: (d.recoveryFlag as number) ^ 1 } as never);
  const high = refusal(() => checkInvoice(malleated.paymentRequest as string, { network: "regtest", amount: AMOUNT }));
  expect([high.reason, high.message]).toEqual(["signature", expect.stringContaining("low-S")]);
});

test("payInvoice refuses a bad invoice before asking LND; an unknown signer finds no route", async () => {
  await using alice = new FakeLnd();
  await using bob = new FakeLnd({ registry: alice.registry });
  const client = new LndRest({ url: alice.url, macaroonHex: alice.macaroonHex, network: "regtest" });
  const invoice = bob.encodeInvoice(hash(), 2_500_000n, "", 600);
  await expect(client.payInvoice(invoice, msat(1_000n), msat(10_000n))).rejects.toThrow("not the agreed");
  await expect(client.payInvoice(invoice, AMOUNT, msat(10_000n), { payee: alice.pubkey })).rejects.toThrow(
    "not by the expected node",
  );
  expect(alice.requests.filter((r) => r.endsWith("/v2/router/send"))).toEqual([]);
  // Without knowing the payee, a re-checksummed invoice passes our checks but names a node nobody knows.
  const bigger = reChecksummed(invoice, "lnbcrt50u");
  const failed = await client.payInvoice(bigger, msat(5_000_000n), msat(10_000n)).catch((e) => e);
  expect([failed.name, failed.failureReason]).toEqual(["PaymentFailedError", "FAILURE_REASON_NO_ROUTE"]);
});

const BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

function polymod(values: number[]): number {
  const gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= gen[i] as number;
  }
  return chk;
}

/**
 * The invoice with another human-readable part (say, a larger amount) and a valid bech32 checksum
 * (BIP173), its signature left as it was: what a tamperer who knows bech32 would send.
 */
function reChecksummed(invoice: string, hrp: string): string {
  const sep = invoice.lastIndexOf("1");
  const data = [...invoice.slice(sep + 1, -6)].map((c) => BECH32.indexOf(c));
  const expanded = [...[...hrp].map((c) => c.charCodeAt(0) >> 5), 0, ...[...hrp].map((c) => c.charCodeAt(0) & 31)];
  const mod = polymod([...expanded, ...data, 0, 0, 0, 0, 0, 0]) ^ 1;
  const checksum = Array.from({ length: 6 }, (_, i) => BECH32[(mod >>> (5 * (5 - i))) & 31]).join("");
  return `${hrp}1${data.map((d) => BECH32[d]).join("")}${checksum}`;
}
