import { expect, test } from "bun:test";
import * as ecc from "@bitcoinerlab/secp256k1";
import { networks, payments } from "bitcoinjs-lib";
import { ECPairFactory } from "ecpair";
import { fakeEsplora, signedSpend } from "../../../test/helpers/fake-esplora.ts";
import { type ChainError, MAX_SMALL_ANSWER_BYTES, MIN_RELAY_FEE_RATE } from "./chain.ts";
import { EsploraChain } from "./esplora.ts";

// These tests run against test/helpers/fake-esplora.ts: a FAKE of a remote Esplora server speaking its
// REST wire format. No Esplora or electrs can run here.

const ECPair = ECPairFactory(ecc);

function p2wpkh() {
  const key = ECPair.makeRandom({ network: networks.regtest });
  const pay = payments.p2wpkh({ pubkey: key.publicKey, network: networks.regtest });
  return { key, address: pay.address as string, script: pay.output as Uint8Array };
}

async function rejected(p: Promise<unknown>): Promise<ChainError> {
  try {
    await p;
  } catch (err) {
    return err as ChainError;
  }
  throw new Error("expected a rejection");
}

test("tip height, UTXOs by address and by script, confirmations and spends", async () => {
  await using server = fakeEsplora();
  const chain = new EsploraChain({ url: server.url });
  const { ledger } = server;
  const a = p2wpkh();
  const confirmed = ledger.fund(a.address, 50_000n);
  const pending = ledger.fund(a.address, 7_000n, false);

  expect(await chain.tipHeight()).toBe(100);
  const utxos = await chain.utxos([a.address]);
  expect(utxos.map((u) => [u.txid, u.value, u.height]).sort()).toEqual(
    [
      [confirmed.txid, 50_000n, 100],
      [pending.txid, 7_000n, undefined],
    ].sort(),
  );
  expect(Buffer.from(utxos[0]?.script ?? []).equals(a.script)).toBe(true);
  expect((await chain.utxos([a.script])).length).toBe(2);

  ledger.mine(3);
  const tx = await chain.transaction(confirmed.txid);
  expect(tx?.confirmations).toBe(4);
  expect((await chain.transaction(pending.txid))?.confirmations).toBe(3);
  expect(await chain.transaction("ab".repeat(32))).toBeUndefined();

  expect(await chain.isSpent(confirmed)).toBe(false);
  const b = p2wpkh();
  const spend = signedSpend(a.key, { ...confirmed, value: 50_000n }, b.script, 49_000n);
  expect(await chain.broadcast(spend.toHex())).toBe(spend.getId());
  expect(await chain.isSpent(confirmed)).toBe(true);
  // Spent out or not, a paid address stays used; one never paid is not.
  expect(await chain.wasUsed([a.address, p2wpkh().address, b.script])).toEqual([true, false, true]);
  expect((await chain.utxos([b.address]))[0]?.value).toBe(49_000n);

  const again = await rejected(chain.broadcast(spend.toHex()));
  expect(again.name).toBe("ChainError");
  expect(again.reason).toBe("rpc");
  expect(again.status).toBe(400);
});

test("fee estimates: the nearest target not beyond the one asked, in sat/kvB, floored at the relay minimum", async () => {
  await using server = fakeEsplora();
  const chain = new EsploraChain({ url: server.url });
  const empty = await rejected(chain.feeRate(6));
  expect(empty.reason).toBe("unavailable");
  expect(empty.hint).toContain("fee rate");

  server.ledger.feeEstimates = { "1": 20.5, "6": 5.1234, "144": 0.25 };
  expect(await chain.feeRate(6)).toBe(5124n);
  expect(await chain.feeRate(3)).toBe(20_500n);
  expect(await chain.feeRate(1008)).toBe(MIN_RELAY_FEE_RATE);
  await expect(chain.feeRate(0)).rejects.toThrow("confirmation target");
});

test("a mainnet address on regtest and a malformed txid are refused before any request", async () => {
  await using server = fakeEsplora();
  const chain = new EsploraChain({ url: server.url });
  await expect(chain.utxos(["bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"])).rejects.toThrow("not a regtest address");
  await expect(chain.transaction("../../etc/passwd")).rejects.toThrow("not a transaction id");
  expect(server.requests).toEqual([]);
});

test("malformed answers are typed errors: bad JSON, wrong shape, HTTP 500, oversized, lying txid", async () => {
  await using server = fakeEsplora();
  const chain = new EsploraChain({ url: server.url });

  server.override = (_req, path) => (path === "/fee-estimates" ? new Response("{not json") : undefined);
  expect((await rejected(chain.feeRate(1))).reason).toBe("json");

  server.override = (_req, path) => (path === "/fee-estimates" ? Response.json({ "1": "fast" }) : undefined);
  expect((await rejected(chain.feeRate(1))).reason).toBe("shape");

  server.override = () => new Response("upstream down", { status: 500 });
  const http = await rejected(chain.tipHeight());
  expect([http.name, http.reason, http.status]).toEqual(["ChainError", "http", 500]);
  expect(http.message).toContain("upstream down");

  server.override = () => new Response("1".repeat(MAX_SMALL_ANSWER_BYTES + 1));
  expect((await rejected(chain.tipHeight())).reason).toBe("too-large");

  // No Content-Length: the cap holds while streaming, too.
  server.override = () =>
    new Response(
      new ReadableStream({
        pull(controller) {
          controller.enqueue(new Uint8Array(16 * 1024).fill(0x31));
        },
      }),
    );
  expect((await rejected(chain.tipHeight())).reason).toBe("too-large");

  server.override = () => new Response("tip");
  expect((await rejected(chain.tipHeight())).reason).toBe("shape");

  const a = p2wpkh();
  const one = server.ledger.fund(a.address, 1_000n);
  const other = server.ledger.fund(a.address, 2_000n);
  const otherHex = server.ledger.txs.get(other.txid)?.hex ?? "";
  server.override = (_req, path) => (path === `/tx/${one.txid}/hex` ? new Response(otherHex) : undefined);
  expect((await rejected(chain.transaction(one.txid))).message).toContain(`when asked for ${one.txid}`);
});

test("a stalled server times out, a cancelled call aborts, a closed port is unreachable", async () => {
  await using server = fakeEsplora();
  server.override = () => new Promise<Response>(() => {});
  const chain = new EsploraChain({ url: server.url, timeoutMs: 100 });
  const started = Date.now();
  expect((await rejected(chain.tipHeight())).name).toBe("TimeoutError");
  expect(Date.now() - started).toBeLessThan(2_000);

  const controller = new AbortController();
  const pending = chain.tipHeight(controller.signal);
  controller.abort();
  expect((await rejected(pending)).name).toBe("AbortedError");

  const closed = fakeEsplora();
  const url = closed.url;
  await closed.stop();
  const gone = await rejected(new EsploraChain({ url }).tipHeight());
  expect([gone.name, gone.reason]).toEqual(["ChainError", "unreachable"]);
});
