import { expect, test } from "bun:test";
import { msat } from "../src/payments/amount.ts";
import { ChannelStore } from "../src/payments/channel/store.ts";
import { account, Ledger } from "../src/payments/ledger.ts";
import { Store } from "../src/store/db.ts";
import { infernet } from "./helpers/cli.ts";
import { fakeEsplora } from "./helpers/fake-esplora.ts";
import { TestNetwork } from "./helpers/network.ts";
import { STORIES_GREEDY_PREFIX } from "./helpers/paths.ts";

/**
 * A direct request paid as it streams, all real processes over real libp2p on 127.0.0.1: a provider
 * that charges (`--require-payment`) and a client that pays over a real payment channel it opened
 * from its wallet (2-of-2 P2WSH, every payment a signed commitment the provider stores and books
 * before it acknowledges). The chain is the one fake (test/helpers/fake-esplora.ts). What the client
 * paid, what the channel carries and what the provider's books show must agree to the msat.
 */
const PRICE = "stories260k=2sat/1ktok";
const CHANNEL_SATS = 20_000n;
const COINS_SATS = 1_000_000n;

test("infernet run --max-price pays a charging provider per token over a channel; without it the provider is not used", async () => {
  await using chain = fakeEsplora();
  await using net = new TestNetwork();
  const env = { INFERNET_CHAIN_URL: chain.url, INFERNET_CHAIN_NETWORK: "regtest", INFERNET_WALLET_FEE_RATE: "2" };
  const provider = await net.start(
    "provider",
    ["--provider", "--models", "stories260k", "--price", PRICE, "--require-payment"],
    env,
  );
  const client = await net.start("client", ["--bootstrap", provider.quic], env);
  await net.discoverable(provider.quic, "stories260k", [provider]);

  const address = await infernet(["wallet", "address"], { home: client.home, env });
  chain.ledger.fund(address.stdout.trim(), COINS_SATS);
  const fund = await infernet(["wallet", "fund", String(CHANNEL_SATS), "--to", provider.quic, "--json"], {
    home: client.home,
  });
  expect(fund.stderr).toBe("");
  const prompt = ["run", "stories260k", "Once upon a time", "--max-tokens", "60", "--remote"];
  // Before its funding has a confirmation the provider counts no payment over the channel.
  const early = await infernet([...prompt, "--max-price", "50sat"], { home: client.home });
  expect(early.stderr).toContain("0 of the 1 confirmation");
  expect(early.code).not.toBe(0);
  chain.ledger.mine();

  // No budget: the only provider charges, so there is none to use.
  const unpaid = await infernet(prompt, { home: client.home });
  expect(unpaid.stderr).toContain("charge for direct requests");
  expect(unpaid.stderr).toContain("--max-price");
  expect(unpaid.code).not.toBe(0);

  const paid = await infernet([...prompt, "--max-price", "50sat"], { home: client.home });
  expect(paid.code).toBe(0);
  expect(paid.stdout.startsWith(STORIES_GREEDY_PREFIX)).toBe(true);
  const said = /paid ([\d.,]+) sat to provider (\S+) over your channel/.exec(paid.stderr);
  if (!said) throw new Error(`no payment reported: ${paid.stderr}`);
  expect(said[2]).toBe(provider.status.peerId);
  const paidMsat = msat(Math.round(Number((said[1] as string).replaceAll(",", "")) * 1_000));
  // 60 tokens at 2 msat a token (the prompt's tokens are free at this price; compute-seconds too).
  expect(paidMsat).toBe(msat(120));

  // The client's channel carries exactly that; the provider booked exactly that as income from it.
  {
    using store = Store.open(client.home);
    const [channel] = new ChannelStore(store).list().filter((c) => c.role === "payer");
    expect(channel?.state.paidMsat).toBe(paidMsat);
  }
  {
    using store = Store.open(provider.home);
    const ledger = new Ledger(store);
    expect(ledger.balance(account("income", client.status.peerId))).toBe(paidMsat);
    ledger.check();
  }

  // A budget that cannot buy the whole answer at the provider's rate: no provider is within it.
  const short = await infernet([...prompt, "--max-price", "21msat"], { home: client.home });
  expect(short.stderr).toContain("no provider of stories260k is within your price (0.021 sat)");
  expect(short.code).toBe(9);
}, 120_000);
