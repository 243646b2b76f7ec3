import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as ecc from "@bitcoinerlab/secp256k1";
import { networks, payments } from "bitcoinjs-lib";
import { ECPairFactory } from "ecpair";
import { z } from "zod";
import { fakeBitcoind } from "../../../test/helpers/fake-bitcoind.ts";
import { signedSpend } from "../../../test/helpers/fake-esplora.ts";
import { tempDir } from "../../../test/helpers/paths.ts";
import { BitcoindChain, RPC_INVALID_ADDRESS_OR_KEY } from "./bitcoind.ts";
import { btcToSats, type ChainError, MAX_SMALL_ANSWER_BYTES } from "./chain.ts";

// These tests run against test/helpers/fake-bitcoind.ts: a FAKE of a remote bitcoind speaking Bitcoin
// Core's JSON-RPC wire format. bitcoind cannot run here.

const ECPair = ECPairFactory(ecc);

function p2wpkh() {
  const key = ECPair.makeRandom({ network: networks.regtest });
  const pay = payments.p2wpkh({ pubkey: key.publicKey, network: networks.regtest });
  return { key, address: pay.address as string, script: pay.output as Uint8Array };
}

function client(url: string, credentials: string, extra: Partial<ConstructorParameters<typeof BitcoindChain>[0]> = {}) {
  const [user = "", password = ""] = credentials.split(":");
  return new BitcoindChain({ url, auth: { user, password }, ...extra });
}

async function rejected(p: Promise<unknown>): Promise<ChainError> {
  try {
    await p;
  } catch (err) {
    return err as ChainError;
  }
  throw new Error("expected a rejection");
}

test("BTC amounts convert to sats exactly", () => {
  expect(btcToSats(0.12345678)).toBe(12_345_678n);
  expect(btcToSats(20_999_999.9769)).toBe(2_099_999_997_690_000n);
  expect(btcToSats(0.00000001)).toBe(1n);
  expect(() => btcToSats(-1)).toThrow();
});

test("scantxoutset UTXOs (UTXO set only), raw transactions, gettxout spends, broadcast", async () => {
  await using server = fakeBitcoind();
  const chain = client(server.url, server.credentials);
  const { ledger } = server;
  const a = p2wpkh();
  const funded = ledger.fund(a.address, 12_345_678n);
  ledger.fund(a.address, 5_000n, false);

  expect(await chain.tipHeight()).toBe(100);
  const utxos = await chain.utxos([a.address, p2wpkh().script]);
  expect(utxos.map((u) => [u.txid, u.vout, u.value, u.height])).toEqual([[funded.txid, 0, 12_345_678n, 100]]);
  expect(Buffer.from(utxos[0]?.script ?? []).equals(a.script)).toBe(true);
  expect(server.calls.filter((m) => m === "scantxoutset").length).toBe(1);

  expect((await chain.transaction(funded.txid))?.confirmations).toBe(1);
  expect(await chain.transaction("cd".repeat(32))).toBeUndefined();

  const b = p2wpkh();
  const spend = signedSpend(a.key, { ...funded, value: 12_345_678n }, b.script, 12_340_000n);
  expect(await chain.isSpent(funded)).toBe(false);
  expect(await chain.broadcast(spend.toHex())).toBe(spend.getId());
  expect(await chain.isSpent(funded)).toBe(true);
  expect((await chain.transaction(spend.getId()))?.confirmations).toBe(0);

  const double = await rejected(chain.broadcast(spend.toHex()));
  expect([double.name, double.reason, double.rpcCode, double.status]).toEqual(["ChainError", "rpc", -27, 500]);
});

test("estimatesmartfee in BTC/kvB becomes sat/kvB; no estimate is 'unavailable'", async () => {
  await using server = fakeBitcoind();
  const chain = client(server.url, server.credentials);
  expect((await rejected(chain.feeRate(6))).reason).toBe("unavailable");
  server.ledger.feeEstimates = { "2": 12.5, "6": 3.2 };
  expect(await chain.feeRate(6)).toBe(3_200n);
  expect(await chain.feeRate(2)).toBe(12_500n);
});

test("cookie-file auth is read per call; bad credentials are a typed refusal with a hint", async () => {
  await using server = fakeBitcoind();
  using dir = tempDir();
  const cookie = join(dir.path, ".cookie");
  writeFileSync(cookie, `${server.credentials}\n`);
  const chain = new BitcoindChain({ url: server.url, auth: { cookieFile: cookie } });
  expect(await chain.tipHeight()).toBe(100);

  writeFileSync(cookie, "__cookie__:stale");
  const refused = await rejected(chain.tipHeight());
  expect([refused.name, refused.status]).toEqual(["ChainError", 401]);
  expect(refused.hint).toContain("rpcpassword");

  const missing = await rejected(
    new BitcoindChain({ url: server.url, auth: { cookieFile: join(dir.path, "no") } }).tipHeight(),
  );
  expect(missing.name).toBe("ConfigError");
});

test("RPC errors in both envelopes: legacy HTTP 500/404, JSON-RPC 2.0 with HTTP 200", async () => {
  await using server = fakeBitcoind();
  const legacy = client(server.url, server.credentials);
  const unknown = await rejected(legacy.call("nosuchmethod", [], z.unknown()));
  expect([unknown.reason, unknown.rpcCode, unknown.status]).toEqual(["rpc", -32601, 404]);
  const missing = await rejected(legacy.call("getrawtransaction", ["ab".repeat(32), true], z.unknown()));
  expect([missing.rpcCode, missing.status]).toEqual([RPC_INVALID_ADDRESS_OR_KEY, 500]);

  const v2 = client(server.url, server.credentials, { jsonrpc: "2.0" });
  expect(await v2.tipHeight()).toBe(100);
  const v2Missing = await rejected(v2.call("getrawtransaction", ["ab".repeat(32), true], z.unknown()));
  expect([v2Missing.rpcCode, v2Missing.status]).toEqual([RPC_INVALID_ADDRESS_OR_KEY, 200]);
  expect(await v2.transaction("ab".repeat(32))).toBeUndefined();
});

test("malformed answers: bad JSON, oversized body, HTTP 500 page, wrong id, wrong result type, timeout", async () => {
  await using server = fakeBitcoind();
  const chain = client(server.url, server.credentials, { timeoutMs: 100 });

  server.override = () => new Response('{"result": 1', { status: 200 });
  expect((await rejected(chain.tipHeight())).reason).toBe("json");

  server.override = () => Response.json({ result: "x".repeat(MAX_SMALL_ANSWER_BYTES), error: null, id: 1 });
  expect((await rejected(chain.tipHeight())).reason).toBe("too-large");

  server.override = () => new Response("<html>Internal Server Error</html>", { status: 500 });
  const page = await rejected(chain.tipHeight());
  expect([page.reason, page.status]).toEqual(["http", 500]);

  server.override = () => Response.json({ result: 5, error: null, id: 999_999 });
  expect((await rejected(chain.tipHeight())).message).toContain("answered request 999999");

  server.override = async (req) =>
    Response.json({ result: "five", error: null, id: ((await req.json()) as { id: number }).id });
  expect((await rejected(chain.tipHeight())).reason).toBe("shape");

  server.override = () => new Promise<Response>(() => {});
  expect((await rejected(chain.tipHeight())).name).toBe("TimeoutError");
});
