import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { bitcoinlibJudge, fakeEsplora } from "../../test/helpers/fake-esplora.ts";
import { tempDir } from "../../test/helpers/paths.ts";
import { msat } from "../payments/amount.ts";
import { EsploraChain } from "../payments/chain/index.ts";
import { mustCloseBy } from "../payments/channel/channel.ts";
import { ChannelRefusedError } from "../payments/channel/errors.ts";
import { ecpair, KeyRing } from "../payments/channel/keys.ts";
import { p2wpkhOutput } from "../payments/channel/script.ts";
import { Store } from "../store/db.ts";
import { createHost } from "./host.ts";
import { ChainTip, closeExpiring, fundingConfirmed, publish } from "./payments.ts";
import { type ChannelService, channelProtocol } from "./protocols/channel/index.ts";
import { connect } from "./protocols/infer/test-hosts.ts";

// A payee's safety net on real hosts over QUIC and real SQLite: its channel is closed with the latest
// state once the chain reaches `mustCloseBy`, and the close is judged by python-bitcoinlib before
// the fake chain (test/helpers/fake-esplora.ts: no Bitcoin node runs here) takes it.
const REFUND_HEIGHT = 1_000;
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function node(height: () => number | Promise<number>) {
  const dir = tempDir();
  const store = Store.openFile(join(dir.path, "infernet.db"));
  const host = await createHost({
    privateKey: await generateKeyPair("Ed25519"),
    listen: ["/ip4/127.0.0.1/udp/0/quic-v1"],
    mdns: false,
    services: { channel: channelProtocol({ store, keys: new KeyRing(), height }) },
  });
  cleanup.push(async () => {
    await host.stop();
    store.close();
    dir[Symbol.dispose]();
  });
  return { host, channels: host.services.channel as ChannelService };
}

/** A 1M-sat channel funded from a coin on the fake chain (P2WPKH, which the fake checks, so it takes the funding). */
function openTerms(chain: ReturnType<typeof fakeEsplora>) {
  const wallet = ecpair().makeRandom();
  const coin = chain.ledger.fund(p2wpkhOutput(wallet.publicKey), 2_000_000n);
  return {
    capacitySats: 1_000_000n,
    feeSats: 500n,
    refundHeight: REFUND_HEIGHT,
    utxos: [{ txid: coin.txid, vout: coin.vout, valueSats: 2_000_000n, signer: wallet }],
    fundingFeeSats: 1_000n,
    changeOutput: p2wpkhOutput(wallet.publicKey),
  };
}

test("a channel paying this node is closed with its latest state at mustCloseBy, once, and the chain takes it", async () => {
  await using chain = fakeEsplora();
  chain.ledger.judge = bitcoinlibJudge;
  chain.ledger.tip = 500;
  const esplora = new EsploraChain({ network: "regtest", url: chain.url });
  const height = () => chain.ledger.tip;
  const payer = await node(height);
  const payee = await node(height);
  await connect(payer.host, payee.host);
  const { params, fundingTx } = await payer.channels.openChannel(payee.host.peerId, openTerms(chain));
  await publish(esplora, fundingTx.toBuffer());
  await payer.channels.pay(params.id, msat(25_000_000n), "deposit");

  expect(await closeExpiring(payee.channels, esplora, mustCloseBy(REFUND_HEIGHT) - 1)).toEqual([]);
  expect(await closeExpiring(payer.channels, esplora, mustCloseBy(REFUND_HEIGHT))).toEqual([]); // not the payee
  const [txid] = await closeExpiring(payee.channels, esplora, mustCloseBy(REFUND_HEIGHT));
  expect(txid).toBeDefined();
  const close = chain.ledger.txs.get(txid as string);
  expect(close).toBeDefined();
  // The payee's output carries what it was paid (25,000 sats), the rest goes back to the payer.
  const outs = [...chain.ledger.outputs.entries()].filter(([k]) => k.startsWith(`${txid}:`)).map(([, o]) => o.value);
  expect(outs).toContain(25_000n);
  expect(payee.channels.channels()[0]?.status).toBe("closing");
  // Again at the next height: the chain has it, nothing is sent twice.
  expect(await closeExpiring(payee.channels, esplora, mustCloseBy(REFUND_HEIGHT) + 1)).toEqual([]);
});

test("the chain's height: not read while no channel needs it, read on demand, refused rather than guessed", async () => {
  await using chain = fakeEsplora();
  chain.ledger.tip = 700;
  let live = false;
  const tip = new ChainTip(new EsploraChain({ network: "regtest", url: chain.url }), () => live);
  tip.start();
  cleanup.push(() => tip.stop());
  await Bun.sleep(50);
  expect(chain.requests.filter((r) => r.includes("/blocks/tip/height"))).toEqual([]); // no channel: no read
  expect(await tip.known()).toBe(700);
  chain.ledger.tip = 701;
  expect(await tip.known()).toBe(700); // read within TIP_FRESH_MS: not read again
  expect(chain.requests.filter((r) => r.includes("/blocks/tip/height"))).toHaveLength(1);
  live = true;
  expect(tip.current()).toBe(700);

  // A chain that cannot answer: no height is made up, the refusal says why.
  const dead = new ChainTip(new EsploraChain({ network: "regtest", url: "http://127.0.0.1:9" }));
  expect(dead.current()).toBe(0);
  await expect(dead.known()).rejects.toThrow(ChannelRefusedError);
  await expect(dead.known()).rejects.toThrow(/cannot read the chain's height \(.*127\.0\.0\.1:9/);
});

test("a payee that cannot read the chain's height refuses the channel with that reason; nothing is stored", async () => {
  await using chain = fakeEsplora();
  const payer = await node(() => 500);
  const payee = await node(() => {
    throw new ChannelRefusedError("this node cannot read the chain's height (test): no channel opens");
  });
  await connect(payer.host, payee.host);
  const opening = payer.channels.openChannel(payee.host.peerId, openTerms(chain));
  await expect(opening).rejects.toThrow(/cannot read the chain's height/);
  expect(payee.channels.channels()).toEqual([]);
});

test("a channel's payments count once its funding has the confirmations asked for; an unknown or unreadable one is refused", async () => {
  await using chain = fakeEsplora();
  const esplora = new EsploraChain({ network: "regtest", url: chain.url });
  const coin = chain.ledger.fund(p2wpkhOutput(ecpair().makeRandom().publicKey), 10_000n, false);
  const params = { id: `${coin.txid}:0`, fundingTxid: coin.txid } as Parameters<typeof fundingConfirmed>[1];
  await expect(fundingConfirmed(esplora, params, 1)).rejects.toThrow("has 0 of the 1 confirmation this node needs");
  await fundingConfirmed(esplora, params, 0);
  chain.ledger.mine();
  await fundingConfirmed(esplora, params, 1);
  await expect(fundingConfirmed(esplora, params, 3)).rejects.toThrow("has 1 of the 3 confirmations");
  chain.ledger.mine(2);
  await fundingConfirmed(esplora, params, 3);
  const unknown = { ...params, fundingTxid: "ab".repeat(32) };
  await expect(fundingConfirmed(esplora, unknown, 1)).rejects.toThrow(ChannelRefusedError);
  const dead = new EsploraChain({ network: "regtest", url: "http://127.0.0.1:9" });
  await expect(fundingConfirmed(dead, params, 1)).rejects.toThrow(/cannot read channel .*'s funding/);
});
