import { expect, test } from "bun:test";
import * as ecc from "@bitcoinerlab/secp256k1";
import { networks, Psbt, payments, Transaction } from "bitcoinjs-lib";
import { ECPairFactory } from "ecpair";
import { fakeBitcoind } from "../../../test/helpers/fake-bitcoind.ts";
import { type FakeLedger, fakeEsplora } from "../../../test/helpers/fake-esplora.ts";
import { BitcoindChain } from "../chain/bitcoind.ts";
import { MAX_SATS } from "../chain/chain.ts";
import { EsploraChain } from "../chain/esplora.ts";
import { dustThreshold, estimateVsize } from "./coin-select.ts";
import { WalletKey } from "./key.ts";
import { Wallet } from "./wallet.ts";

// The chain here is test/helpers/fake-esplora.ts (and fake-bitcoind.ts): FAKES of remote services that
// cannot run here, speaking their wire formats, over an in-memory ledger that verifies every input's
// BIP143 signature before it accepts a transaction.

const SEED = Buffer.alloc(32, 7);
const ECPair = ECPairFactory(ecc);
const foreign = () =>
  payments.p2wpkh({ pubkey: ECPair.makeRandom({ network: networks.regtest }).publicKey, network: networks.regtest });

async function failure(p: Promise<unknown>): Promise<Error & { hint?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

function funded(ledger: FakeLedger, key: WalletKey) {
  ledger.fund(key.receive(0).address, 100_000n);
  ledger.fund(key.receive(7).address, 50_000n);
  ledger.fund(key.receive(25).address, 30_000n, false);
  ledger.fund(key.receive(60).address, 999n); // beyond the gap after index 25: not found
  ledger.fund(key.change(2).address, 10_000n);
}

test("balance scans receive and change addresses up to the gap limit", async () => {
  await using server = fakeEsplora();
  const key = WalletKey.fromSeed(SEED, "regtest");
  funded(server.ledger, key);
  const wallet = new Wallet({ key, chain: new EsploraChain({ url: server.url }) });
  expect(await wallet.balance()).toEqual({ confirmed: 160_000n, unconfirmed: 30_000n });
  const scan = await wallet.scan();
  expect([scan.nextReceive, scan.nextChange]).toEqual([26, 3]);
  expect(await wallet.receiveAddress()).toBe(key.receive(26).address);
  const strict = new Wallet({ key, chain: new EsploraChain({ url: server.url }), minConfirmations: 2 });
  expect(await strict.balance()).toEqual({ confirmed: 0n, unconfirmed: 190_000n });
});

test("a send: signatures verify (PSBT and the ledger), change to a fresh change address, fee covers the rate", async () => {
  await using server = fakeEsplora();
  const key = WalletKey.fromSeed(SEED, "regtest");
  funded(server.ledger, key);
  const wallet = new Wallet({ key, chain: new EsploraChain({ url: server.url }) });
  const to = foreign();
  const built = await wallet.buildSend(to.address as string, 120_000n, 2_000n);

  const psbt = Psbt.fromBase64(built.psbt, { network: networks.regtest });
  expect(psbt.validateSignaturesOfAllInputs((pubkey, hash, sig) => ecc.verify(hash, pubkey, sig))).toBe(true);
  psbt.finalizeAllInputs();
  expect(psbt.extractTransaction().toHex()).toBe(built.hex);

  const tx = Transaction.fromHex(built.hex);
  expect(tx.getId()).toBe(built.txid);
  expect(tx.ins.length).toBe(2); // largest first: 100k + 50k
  expect(Buffer.from(tx.outs[0]?.script ?? []).equals(to.output as Uint8Array)).toBe(true);
  expect(tx.outs[0]?.value).toBe(120_000n);
  expect(built.change?.address).toBe(key.change(3).address);
  expect(tx.outs[1]?.value).toBe(built.change?.value);
  expect(150_000n - 120_000n - (built.change?.value ?? 0n)).toBe(built.fee);
  expect(built.fee).toBeGreaterThanOrEqual(BigInt(tx.virtualSize() * 2));
  expect(tx.virtualSize()).toBeLessThanOrEqual(estimateVsize(2, [22, 22]));
  expect(server.ledger.broadcasts).toEqual([]);

  const sent = await wallet.send(to.address as string, 120_000n, 2_000n);
  expect(server.ledger.broadcasts.length).toBe(1);
  expect(await wallet.chain.isSpent(sent.inputs[0] as (typeof sent.inputs)[number])).toBe(true);
  expect(await wallet.balance()).toEqual({ confirmed: 10_000n, unconfirmed: 30_000n + (sent.change?.value ?? 0n) });
  server.ledger.mine();
  expect((await wallet.balance()).confirmed).toBe(10_000n + 30_000n + (sent.change?.value ?? 0n));
});

test("dust change goes to the fee instead of an output", async () => {
  await using server = fakeEsplora();
  const key = WalletKey.fromSeed(SEED, "regtest");
  server.ledger.fund(key.receive(0).address, 10_000n);
  const wallet = new Wallet({ key, chain: new EsploraChain({ url: server.url }) });
  const built = await wallet.send(foreign().address as string, 9_700n, 1_000n);
  expect(built.change).toBeUndefined();
  expect(Transaction.fromHex(built.hex).outs.length).toBe(1);
  expect(built.fee).toBe(300n);
});

test("refusals: dust, insufficient funds, another network's address, zero, negative, beyond supply, fee rates", async () => {
  await using server = fakeEsplora();
  const key = WalletKey.fromSeed(SEED, "regtest");
  server.ledger.fund(key.receive(0).address, 10_000n);
  server.ledger.fund(key.receive(1).address, 5_000n, false);
  const wallet = new Wallet({ key, chain: new EsploraChain({ url: server.url }) });
  const to = foreign().address as string;
  expect(dustThreshold(foreign().output as Uint8Array)).toBe(294n);

  const dust = await failure(wallet.buildSend(to, 293n, 1_000n));
  expect([dust.name, dust.message]).toEqual(["InvalidInputError", expect.stringContaining("dust")]);
  const poor = await failure(wallet.buildSend(to, 12_000n, 1_000n)); // the 5,000 is unconfirmed
  expect(poor.name).toBe("InsufficientCoinsError");
  expect(poor.hint).toContain("fund");
  const mainnet = await failure(wallet.buildSend("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", 1_000n, 1_000n));
  expect([mainnet.name, mainnet.message]).toEqual([
    "InvalidInputError",
    expect.stringContaining("not a regtest address"),
  ]);
  expect((await failure(wallet.buildSend("nonsense", 1_000n, 1_000n))).name).toBe("InvalidInputError");
  expect((await failure(wallet.buildSend(to, 0n, 1_000n))).message).toContain("not more than zero");
  expect((await failure(wallet.buildSend(to, -5n, 1_000n))).message).toContain("not more than zero");
  expect((await failure(wallet.buildSend(to, MAX_SATS + 1n, 1_000n))).message).toContain("21 million");
  expect((await failure(wallet.buildSend(to, 1_000n, 999n))).message).toContain("relay minimum");
  expect((await failure(wallet.buildSend(to, 1_000n, 10n ** 9n))).message).toContain("absurdly high");
  expect(server.ledger.broadcasts).toEqual([]);
  expect(() => new Wallet({ key, chain: new EsploraChain({ url: server.url, network: "signet" }) })).toThrow("regtest");
});

test("fundingInputs gives coins and signers a channel opener can spend into a P2WSH output", async () => {
  await using server = fakeEsplora();
  const key = WalletKey.fromSeed(SEED, "regtest");
  server.ledger.fund(key.receive(0).address, 80_000n);
  server.ledger.fund(key.receive(1).address, 40_000n);
  const wallet = new Wallet({ key, chain: new EsploraChain({ url: server.url }) });
  const a = key.channelKey(0).publicKey;
  const b = ECPair.makeRandom().publicKey;
  const funding = payments.p2wsh({ redeem: payments.p2ms({ m: 2, pubkeys: [a, b].sort(Buffer.compare) }) });
  const picked = await wallet.fundingInputs(100_000n, 1_500n, funding.output);
  expect(picked.inputs.length).toBe(2);

  const psbt = new Psbt({ network: networks.regtest });
  for (const c of picked.inputs)
    psbt.addInput({ hash: c.txid, index: c.vout, witnessUtxo: { script: c.script, value: c.value } });
  psbt.addOutput({ script: funding.output as Uint8Array, value: 100_000n });
  if (picked.change) psbt.addOutput({ script: picked.change.script, value: picked.change.value });
  picked.inputs.forEach((c, i) => {
    psbt.signInput(i, c.signer);
  });
  psbt.finalizeAllInputs();
  const tx = psbt.extractTransaction();
  expect(120_000n - 100_000n - (picked.change?.value ?? 0n)).toBe(picked.fee);
  expect(await wallet.chain.broadcast(tx.toHex())).toBe(tx.getId());
});

test("the same wallet over bitcoind's JSON-RPC sees only confirmed coins (scantxoutset)", async () => {
  await using server = fakeBitcoind();
  const key = WalletKey.fromSeed(SEED, "regtest");
  funded(server.ledger, key);
  const [user = "", password = ""] = server.credentials.split(":");
  const chain = new BitcoindChain({ url: server.url, auth: { user, password } });
  const wallet = new Wallet({ key, chain });
  // receive(25)'s output is in the mempool only, so the scan stops after index 7 + 20: 60 and 25 unseen.
  expect(await wallet.balance()).toEqual({ confirmed: 160_000n, unconfirmed: 0n });
  const sent = await wallet.send(foreign().address as string, 100_000n, 1_000n);
  expect(server.ledger.broadcasts).toEqual([sent.hex]);
});
