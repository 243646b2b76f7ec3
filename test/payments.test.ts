import { expect, test } from "bun:test";
import { join } from "node:path";
import { Transaction } from "bitcoinjs-lib";
import { AggregatorPayments } from "../src/node/aggregator/payments.ts";
import { AggregatorStore } from "../src/node/aggregator/store.ts";
import { msat } from "../src/payments/amount.ts";
import { account, Ledger } from "../src/payments/ledger.ts";
import { Store } from "../src/store/db.ts";
import { earnedByHand, MNIST_IMAGES, MNIST_RECORDS, watchedSubmit } from "./fixtures/jobs.ts";
import { infernet } from "./helpers/cli.ts";
import { bitcoinlibJudge, fakeEsplora } from "./helpers/fake-esplora.ts";
import { type NodeProcess, TestNetwork } from "./helpers/network.ts";
import { ROOT } from "./helpers/paths.ts";

/**
 * The market end to end, all real processes over real libp2p on 127.0.0.1: providers post bonds and
 * a client deposits its quote over real payment channels (2-of-2 P2WSH funded from each node's
 * wallet, every payment a signed commitment) to an aggregator that takes payment (`--escrow`); one
 * of the four providers lies on every digit. The chain is the one fake here (test/helpers/
 * fake-esplora.ts speaks Esplora's REST API over an in-memory UTXO set that checks signatures):
 * no Bitcoin node runs here. Every balance is computed by hand from what the aggregator verified.
 */
const LIAR = join(ROOT, "test/fixtures/lying-provider.ts");
/** sats per 1,000 inferences: a copy of SHARD records earns SHARD * PRICE msat. */
const PRICE = 20;
const SHARD = 1_000;
const FEE_PERCENT = 1;
const QUOTE_MSAT = 2_000_000;
const BOND_MSAT = 100_000;
const CHANNEL_SATS = 50_000n;
const COINS_SATS = 1_000_000n;

async function fundWallet(chain: ReturnType<typeof fakeEsplora>, node: NodeProcess): Promise<void> {
  // `wallet address` makes the wallet's key (a node makes it only when it first needs it).
  const address = await infernet(["wallet", "address"], { home: node.home, env: { INFERNET_CHAIN_URL: chain.url } });
  expect(address.code).toBe(0);
  chain.ledger.fund(address.stdout.trim(), COINS_SATS);
}

test("a client deposits over a channel, one cheater among four providers: everyone's balance to the msat", async () => {
  await using chain = fakeEsplora();
  // A channel's close spends its 2-of-2: the fake chain takes it only if python-bitcoinlib does.
  chain.ledger.judge = bitcoinlibJudge;
  await using net = new TestNetwork();
  const env = { INFERNET_CHAIN_URL: chain.url, INFERNET_CHAIN_NETWORK: "regtest", INFERNET_WALLET_FEE_RATE: "2" };
  const aggregator = await net.start("aggregator", ["--aggregator", "--escrow", "--fee", `${FEE_PERCENT}%`], env);
  const provider = ["--provider", "--models", "mnist-8", "--price", String(PRICE), "--bootstrap", aggregator.quic];
  const nodes = await Promise.all([
    net.startScript("cheat", LIAR, ["--lie", "values"], {
      ...env,
      INFERNET_BOOTSTRAP: aggregator.quic,
      INFERNET_PRICE: String(PRICE),
    }),
    ...["h1", "h2", "h3"].map((n) => net.start(n, provider, env)),
  ]);
  const client = await net.start("client", ["--bootstrap", aggregator.quic], env);
  await net.discoverable(aggregator.quic, "mnist-8", nodes);
  const agg = aggregator.status.peerId;

  // Coins on the chain for everyone who opens a channel; each provider bonds, the client deposits.
  for (const n of [aggregator, ...nodes, client]) await fundWallet(chain, n);
  for (const n of [...nodes, client]) {
    const fund = await infernet(["wallet", "fund", String(CHANNEL_SATS), "--to", aggregator.quic, "--json"], {
      home: n.home,
    });
    expect(fund.stderr).toBe("");
    expect(JSON.parse(fund.stdout)).toMatchObject({ capacitySats: CHANNEL_SATS.toString() });
    // Payments count once the funding has a confirmation (INFERNET_CHANNEL_CONFIRMATIONS, default 1).
    chain.ledger.mine();
    const paid = n === client ? QUOTE_MSAT : BOND_MSAT;
    const memo = n === client ? "deposit" : "bond";
    const pay = await infernet(["wallet", "pay", `${paid}msat`, "--to", agg, "--memo", memo, "--json"], {
      home: n.home,
    });
    expect(pay.stderr).toBe("");
    expect(JSON.parse(pay.stdout)).toEqual({ sequence: 1, paidMsat: String(paid) });
  }
  chain.ledger.mine();

  const output = join(client.home, "labels.jsonl");
  const job = ["--model", "mnist-8", "--inputs", MNIST_IMAGES, "--shard-size", String(SHARD), "--redundancy", "2"];
  const terms = [...job, "--max-price", `${QUOTE_MSAT / 1_000}sat`, "--bootstrap", aggregator.quic, "--no-mdns"];
  // Two copies of every record at the providers' price, plus the fee; a dry run holds and locks nothing.
  const quote = {
    event: "quote",
    aggregator: agg,
    estimatedMsat: String(Math.ceil(2 * MNIST_RECORDS * PRICE * (1 + FEE_PERCENT / 100))),
    lockedMsat: String(QUOTE_MSAT),
    feePercent: FEE_PERCENT,
    providers: 4,
  };
  const dry = await infernet(["submit", ...terms, "--quote", "--json"], { home: client.home });
  expect(dry.stderr).toBe("");
  expect(dry.code).toBe(0);
  expect(JSON.parse(dry.stdout)).toEqual(quote);
  {
    using store = Store.open(aggregator.home);
    expect(store.db.query("SELECT count(*) AS n FROM aggregator_jobs").get()).toEqual({ n: 0 });
    expect(new AggregatorPayments(store, new AggregatorStore(store)).escrow.credit(client.status.peerId)).toBe(
      msat(QUOTE_MSAT),
    );
  }

  await using submit = watchedSubmit([...terms, "--output", output], client.home);
  const r = await submit.done();
  expect(r.events[0]).toEqual(quote);
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  expect(r.events.at(-2)).toMatchObject({ event: "output", records: MNIST_RECORDS });

  // The aggregator's books, read from its database while it runs (the refund comes on a tick).
  using store = Store.open(aggregator.home);
  const books = new AggregatorPayments(store, new AggregatorStore(store));
  const deadline = Date.now() + 10_000;
  while (books.ledger.total("escrow") > 0n && Date.now() < deadline) await Bun.sleep(50);
  books.check();
  // Each verified copy earns its price times its multipliers for speed and reputation, as recorded
  // with it (payments/earnings.ts), rounded down; the fee is 1% of that, rounded up per copy.
  const copyMsat = SHARD * PRICE;
  const { earned, total: earnedTotal, fees, lowestBps } = earnedByHand(store.db, copyMsat, FEE_PERCENT);
  expect(lowestBps).toBeGreaterThanOrEqual(7_200);
  const cheat = nodes[0]?.status.peerId as string;
  expect(earned.get(cheat)).toBeUndefined();
  // Each honest provider is paid what it earned over a channel the aggregator opened to it: its
  // earnings at the aggregator come down to 0 and its own books show the income.
  for (const h of nodes.slice(1)) {
    const id = h.status.peerId;
    const due = msat(earned.get(id) ?? 0);
    expect(books.ledger.credited(account("earnings", id), "release")).toBe(due);
    using theirs = Store.open(h.home);
    const income = () => new Ledger(theirs).balance(account("income", agg));
    const paid = Date.now() + 30_000;
    while ((books.escrow.earnings(id) > 0n || income() < due) && Date.now() < paid) {
      // Blocks come: a payout channel is funded from the aggregator's coins once they are confirmed.
      chain.ledger.mine();
      await Bun.sleep(100);
    }
    expect(books.escrow.earnings(id)).toBe(msat(0));
    expect(income()).toBe(due);
    expect(books.escrow.bond(id)).toBe(msat(BOND_MSAT));
  }
  expect(books.escrow.earnings(cheat)).toBe(msat(0));
  expect(books.escrow.bond(cheat)).toBe(msat(0));
  expect(books.ledger.balance(account("forfeits"))).toBe(msat(BOND_MSAT));
  expect(books.ledger.balance(account("fees"))).toBe(msat(fees));
  expect(books.ledger.total("escrow")).toBe(0n);
  expect(books.escrow.credit(client.status.peerId)).toBe(msat(QUOTE_MSAT - earnedTotal - fees));
  // What came in over the channels (deposit, bonds) less what went out (payouts).
  const paidOut = earnedTotal;
  expect(-books.ledger.balanceOf(account("outside", "channel"))).toBe(BigInt(QUOTE_MSAT + 4 * BOND_MSAT - paidOut));
  books.check();
  // The client's report says what the ledger charged.
  const report = r.events.at(-1)?.report as { cost: { providersMsat: number; feeMsat: number } };
  expect(report.cost).toMatchObject({ providersMsat: earnedTotal, feeMsat: fees });

  // The client closes its channel: the close both signed pays the aggregator what the channel
  // carried (the deposit, in whole sats) and the client the rest, and the chain takes it.
  const channel = (
    JSON.parse((await infernet(["wallet", "--json"], { home: client.home })).stdout) as {
      channels: { id: string; role: string }[];
    }
  ).channels.find((c) => c.role === "payer");
  const close = await infernet(["wallet", "close", channel?.id.slice(0, 12) ?? "none"], { home: client.home });
  expect(close.stderr).toBe("");
  const closeTx = Transaction.fromHex(chain.ledger.broadcasts.at(-1) as string);
  expect(closeTx.getId()).toBe(close.stdout.trim());
  const deposit = BigInt(Math.floor(QUOTE_MSAT / 1_000));
  expect(closeTx.outs.map((o) => o.value).sort()).toContain(deposit);
}, 240_000);
