import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { AggregatorPayments } from "../src/node/aggregator/payments.ts";
import { AggregatorStore } from "../src/node/aggregator/store.ts";
import { msat } from "../src/payments/amount.ts";
import { account } from "../src/payments/ledger.ts";
import { Store } from "../src/store/db.ts";
import { MNIST_IMAGES, MNIST_RECORDS } from "./fixtures/jobs.ts";
import { infernet } from "./helpers/cli.ts";
import { FakeLnd } from "./helpers/fake-lnd.ts";
import { TestNetwork } from "./helpers/network.ts";

/**
 * `infernet submit --pay lightning` end to end, real processes over real libp2p on 127.0.0.1: the
 * aggregator (`--escrow`, with an LND) answers the quote with a hold invoice, the client's LND pays
 * it, the job runs once the payment is held, and the hold is settled when the job ends. The two
 * Lightning nodes are FAKES of LND's REST API (test/helpers/fake-lnd.ts: no Lightning node runs
 * here) that pay each other's real BOLT11 hold invoices.
 */
const PRICE = 20;
const SHARD = 2_000;
const QUOTE_SATS = 2_000;

function lndEnv(node: FakeLnd, dir: string, name: string): Record<string, string> {
  const macaroon = join(dir, `${name}.macaroon`);
  writeFileSync(macaroon, Buffer.from(node.macaroonHex, "hex"), { mode: 0o600 });
  return { INFERNET_LND_URL: node.url, INFERNET_LND_MACAROON: macaroon };
}

test("submit --pay lightning: the quote's hold invoice is paid from the client's LND, held while the job runs, settled at its end", async () => {
  await using aggregatorLnd = new FakeLnd();
  await using clientLnd = new FakeLnd({ registry: aggregatorLnd.registry });
  await using net = new TestNetwork();
  const aggregator = await net.start(
    "aggregator",
    ["--aggregator", "--escrow", "--fee", "1%"],
    lndEnv(aggregatorLnd, net.home("keys"), "aggregator"),
  );
  // Each provider has a Lightning node too: it announces the key, and is paid its earnings by keysend.
  const providerLnds = [
    new FakeLnd({ registry: aggregatorLnd.registry }),
    new FakeLnd({ registry: aggregatorLnd.registry }),
  ];
  const providers = await Promise.all(
    ["p1", "p2"].map((n, i) =>
      net.start(
        n,
        ["--provider", "--models", "mnist-8", "--price", String(PRICE), "--bootstrap", aggregator.quic],
        lndEnv(providerLnds[i] as FakeLnd, net.home("keys"), n),
      ),
    ),
  );
  await net.discoverable(aggregator.quic, "mnist-8", providers);
  const before = aggregatorLnd.balanceMsat;
  const startBalance = (providerLnds[0] as FakeLnd).balanceMsat;

  const home = net.home("client");
  const job = ["--model", "mnist-8", "--inputs", MNIST_IMAGES, "--shard-size", String(SHARD), "--redundancy", "1"];
  const r = await infernet(
    [
      "submit",
      ...job,
      "--max-price",
      `${QUOTE_SATS}sat`,
      "--pay",
      "lightning",
      "--output",
      join(home, "labels.jsonl"),
      "--bootstrap",
      aggregator.quic,
      "--no-mdns",
      "--json",
    ],
    { home, env: lndEnv(clientLnd, net.home("keys"), "client") },
  );
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  const events = r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(events[0]).toMatchObject({ event: "quote", lockedMsat: String(QUOTE_SATS * 1_000) });
  expect(events.find((e) => e.event === "output")).toMatchObject({ records: MNIST_RECORDS });
  expect(events.at(-1)).toEqual({ event: "lightning", state: "settled", msat: String(QUOTE_SATS * 1_000) });
  // The aggregator's node took the whole hold; its books keep what the job did not spend as credit.
  expect(aggregatorLnd.balanceMsat).toBe(before + BigInt(QUOTE_SATS * 1_000));
  using store = Store.open(aggregator.home);
  const books = new AggregatorPayments(store, new AggregatorStore(store));
  const report = events.find((e) => e.event === "report")?.report;
  const spent = (report?.cost?.providersMsat ?? 0) + (report?.cost?.feeMsat ?? 0);
  expect(spent).toBeGreaterThan(0);
  const client = store.db.query<{ c: string }, []>("SELECT client_peer AS c FROM aggregator_jobs").get()?.c ?? "";
  expect(books.escrow.credit(client)).toBe(msat(QUOTE_SATS * 1_000 - spent));
  expect(-books.ledger.balanceOf(account("outside", "lightning"))).toBe(BigInt(QUOTE_SATS * 1_000));
  books.check();

  // The providers' earnings leave by keysend to the nodes they announced (payouts run every few seconds).
  for (const [i, p] of providers.entries()) {
    const earned = books.ledger.credited(account("earnings", p.status.peerId), "release");
    const node = providerLnds[i] as FakeLnd;
    const paid = Date.now() + 30_000;
    while (books.escrow.earnings(p.status.peerId) > 0n && Date.now() < paid) await Bun.sleep(100);
    expect(books.escrow.earnings(p.status.peerId)).toBe(msat(0));
    expect(node.balanceMsat - startBalance).toBe(BigInt(earned));
  }
  books.check();
  for (const node of providerLnds) await node.stop();
}, 180_000);
