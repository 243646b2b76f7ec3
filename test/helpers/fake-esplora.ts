import { createHash, randomBytes } from "node:crypto";
import * as ecc from "@bitcoinerlab/secp256k1";
import { address, crypto, Psbt, payments, script, Transaction } from "bitcoinjs-lib";
import { bitcoinNetwork, type ChainNetwork } from "../../src/payments/chain/network.ts";

/**
 * A FAKE of a remote Esplora server (Blockstream esplora / electrs REST API, as its API.md documents).
 * No Esplora, electrs or bitcoind can run here (none is packaged for this Debian), so chain tests run
 * against this Bun.serve server on 127.0.0.1 speaking the same paths, plain-text and JSON shapes and
 * status codes. It is backed by `FakeLedger`, a tiny in-memory chain that checks what a node checks
 * for the transactions these tests send (inputs exist and are unspent, P2WPKH signatures verify,
 * outputs do not exceed inputs), so a wallet's transaction is tested, not merely stored.
 */

export interface LedgerOutput {
  value: bigint;
  script: Uint8Array;
  /** Height of the block holding the creating transaction; undefined while in the mempool. */
  height: number | undefined;
  spentBy: { txid: string; vin: number } | undefined;
}

/** A refusal in bitcoind's words (Esplora passes these through from sendrawtransaction). */
export class LedgerRejection extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export class FakeLedger {
  tip = 100;
  readonly outputs = new Map<string, LedgerOutput>();
  readonly txs = new Map<string, { hex: string; height: number | undefined }>();
  /** Esplora's /fee-estimates table: confirmation target -> sat/vB. Empty like a fresh regtest node. */
  feeEstimates: Record<string, number> = {};
  /** Every transaction accepted from a client, in order. */
  readonly broadcasts: string[] = [];
  /**
   * Judges a transaction that spends anything but P2WPKH (a channel's 2-of-2 close, say), or this
   * fake refuses it: tests plug in an interpreter of their own (test/fixtures/verify_tx.py).
   */
  judge: ((hex: string, prevouts: LedgerOutput[], height: number) => string | undefined) | undefined;

  constructor(readonly network: ChainNetwork = "regtest") {}

  scriptOf(target: string | Uint8Array): Uint8Array {
    return typeof target === "string" ? address.toOutputScript(target, bitcoinNetwork(this.network)) : target;
  }

  /** Pays `sats` to `target` in a transaction from nowhere (like a faucet); confirmed unless told otherwise. */
  fund(target: string | Uint8Array, sats: bigint, confirmed = true): { txid: string; vout: number } {
    const tx = new Transaction();
    tx.version = 2;
    tx.addInput(randomBytes(32), 0);
    tx.addOutput(this.scriptOf(target), sats);
    const txid = tx.getId();
    this.#record(tx, confirmed ? this.tip : undefined);
    return { txid, vout: 0 };
  }

  /** Mines `blocks` blocks; the mempool goes into the first. */
  mine(blocks = 1): void {
    const height = this.tip + 1;
    this.tip += blocks;
    for (const tx of this.txs.values()) if (tx.height === undefined) tx.height = height;
    for (const out of this.outputs.values()) if (out.height === undefined) out.height = height;
  }

  unspent(script: Uint8Array, { confirmedOnly = false } = {}): Array<{ txid: string; vout: number } & LedgerOutput> {
    const hex = Buffer.from(script).toString("hex");
    const found: Array<{ txid: string; vout: number } & LedgerOutput> = [];
    for (const [key, out] of this.outputs) {
      if (Buffer.from(out.script).toString("hex") !== hex) continue;
      if (confirmedOnly && out.height === undefined) continue;
      // The UTXO set (what scantxoutset reads) still holds outputs spent only by the mempool.
      const spent = out.spentBy && (!confirmedOnly || this.txs.get(out.spentBy.txid)?.height !== undefined);
      if (spent) continue;
      const [txid = "", vout = "0"] = key.split(":");
      found.push({ txid, vout: Number(vout), ...out });
    }
    return found;
  }

  /** Esplora's chain_stats and mempool_stats of an address (funded/spent output counts and sums, tx count). */
  stats(script: Uint8Array) {
    const hex = Buffer.from(script).toString("hex");
    const empty = () => ({ funded_txo_count: 0, funded_txo_sum: 0, spent_txo_count: 0, spent_txo_sum: 0, tx_count: 0 });
    const chain_stats = empty();
    const mempool_stats = empty();
    const txids = { chain: new Set<string>(), mempool: new Set<string>() };
    for (const [key, out] of this.outputs) {
      if (Buffer.from(out.script).toString("hex") !== hex) continue;
      const funded = out.height === undefined ? mempool_stats : chain_stats;
      funded.funded_txo_count++;
      funded.funded_txo_sum += Number(out.value);
      (out.height === undefined ? txids.mempool : txids.chain).add(key.split(":")[0] as string);
      if (!out.spentBy) continue;
      const spentInBlock = this.txs.get(out.spentBy.txid)?.height !== undefined;
      const spent = spentInBlock ? chain_stats : mempool_stats;
      spent.spent_txo_count++;
      spent.spent_txo_sum += Number(out.value);
      (spentInBlock ? txids.chain : txids.mempool).add(out.spentBy.txid);
    }
    chain_stats.tx_count = txids.chain.size;
    mempool_stats.tx_count = txids.mempool.size;
    return { chain_stats, mempool_stats };
  }

  /** Checks and records a client's transaction as a node's mempool would, or throws a LedgerRejection. */
  accept(hex: string): string {
    let tx: Transaction;
    try {
      tx = Transaction.fromHex(hex);
    } catch {
      throw new LedgerRejection(-22, "TX decode failed");
    }
    const txid = tx.getId();
    if (this.txs.has(txid)) throw new LedgerRejection(-27, "Transaction already in block chain");
    let totalIn = 0n;
    const prevouts: LedgerOutput[] = [];
    for (const input of tx.ins) {
      const key = `${Buffer.from(input.hash).reverse().toString("hex")}:${input.index}`;
      const prev = this.outputs.get(key);
      if (!prev || prev.spentBy) throw new LedgerRejection(-25, "bad-txns-inputs-missingorspent");
      prevouts.push(prev);
      totalIn += prev.value;
    }
    const p2wpkh = (o: LedgerOutput) => o.script.length === 22 && o.script[0] === 0x00 && o.script[1] === 0x14;
    if (this.judge && !prevouts.every(p2wpkh)) {
      const error = this.judge(hex, prevouts, this.tip);
      if (error) throw new LedgerRejection(-26, `mandatory-script-verify-flag-failed (${error})`);
    } else for (const [i, prev] of prevouts.entries()) verifyP2wpkhInput(tx, i, prev);
    const totalOut = tx.outs.reduce((sum, o) => sum + o.value, 0n);
    if (totalOut > totalIn) throw new LedgerRejection(-26, "bad-txns-in-belowout");
    // Bitcoin Core's default minimum relay fee, 1 sat/vB.
    if (totalIn - totalOut < BigInt(tx.virtualSize())) {
      throw new LedgerRejection(-26, "min relay fee not met");
    }
    tx.ins.forEach((input, vin) => {
      const key = `${Buffer.from(input.hash).reverse().toString("hex")}:${input.index}`;
      (this.outputs.get(key) as LedgerOutput).spentBy = { txid, vin };
    });
    this.#record(tx, undefined);
    this.broadcasts.push(hex);
    return txid;
  }

  blockHash(height: number): string {
    return createHash("sha256").update(`block ${height}`).digest("hex");
  }

  #record(tx: Transaction, height: number | undefined): void {
    const txid = tx.getId();
    this.txs.set(txid, { hex: tx.toHex(), height });
    tx.outs.forEach((o, vout) => {
      this.outputs.set(`${txid}:${vout}`, { value: o.value, script: o.script, height, spentBy: undefined });
    });
  }
}

/** BIP143 signature check of a P2WPKH input: the only kind of input this fake accepts. */
function verifyP2wpkhInput(tx: Transaction, index: number, prev: LedgerOutput): void {
  const program = prev.script;
  const witness = tx.ins[index]?.witness ?? [];
  const [sig, pubkey] = witness;
  const isP2wpkh = program.length === 22 && program[0] === 0x00 && program[1] === 0x14;
  if (!isP2wpkh || witness.length !== 2 || !sig || !pubkey) {
    throw new LedgerRejection(-26, "non-mandatory-script-verify-flag (this fake accepts P2WPKH inputs only)");
  }
  if (Buffer.compare(crypto.hash160(pubkey), program.subarray(2)) !== 0) {
    throw new LedgerRejection(-26, "mandatory-script-verify-flag-failed (Witness program hash mismatch)");
  }
  const decoded = script.signature.decode(sig);
  const scriptCode = payments.p2pkh({ hash: program.subarray(2) }).output as Uint8Array;
  const hash = tx.hashForWitnessV0(index, scriptCode, prev.value, decoded.hashType);
  if (!ecc.verify(hash, pubkey, decoded.signature, true)) {
    throw new LedgerRejection(
      -26,
      "mandatory-script-verify-flag-failed (Signature must be zero for failed CHECK(MULTI)SIG operation)",
    );
  }
}

/** Answers a test substitutes for the real route (bad JSON, a huge body, an error status, a stall). */
export type Override = (req: Request, path: string) => Response | Promise<Response> | undefined;

export interface FakeEsplora extends AsyncDisposable {
  url: string;
  ledger: FakeLedger;
  override: Override | undefined;
  /** Paths requested, in order. */
  requests: string[];
  stop(): Promise<void>;
}

export function fakeEsplora(ledger = new FakeLedger()): FakeEsplora {
  const requests: string[] = [];
  const state: { override: Override | undefined } = { override: undefined };
  const json = (value: unknown, status = 200) => Response.json(value, { status });
  const text = (body: string, status = 200) =>
    new Response(body, { status, headers: { "content-type": "text/plain" } });
  const status = (height: number | undefined) =>
    height === undefined
      ? { confirmed: false }
      : {
          confirmed: true,
          block_height: height,
          block_hash: ledger.blockHash(height),
          block_time: 1_700_000_000 + height,
        };

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      requests.push(`${req.method} ${path}`);
      const forced = await state.override?.(req, path);
      if (forced) return forced;
      if (req.method === "GET" && path === "/blocks/tip/height") return text(String(ledger.tip));
      if (req.method === "GET" && path === "/fee-estimates") return json(ledger.feeEstimates);
      if (req.method === "POST" && path === "/tx") {
        try {
          return text(ledger.accept((await req.text()).trim()));
        } catch (err) {
          if (!(err instanceof LedgerRejection)) throw err;
          return text(`sendrawtransaction RPC error: ${JSON.stringify({ code: err.code, message: err.message })}`, 400);
        }
      }
      let m = /^\/address\/([^/]+)\/utxo$/.exec(path);
      if (req.method === "GET" && m) {
        let spk: Uint8Array;
        try {
          spk = ledger.scriptOf(decodeURIComponent(m[1] as string));
        } catch {
          return text("Invalid Bitcoin address", 400);
        }
        return json(
          ledger
            .unspent(spk)
            .map((u) => ({ txid: u.txid, vout: u.vout, status: status(u.height), value: Number(u.value) })),
        );
      }
      m = /^\/address\/([^/]+)$/.exec(path);
      if (req.method === "GET" && m) {
        const addr = decodeURIComponent(m[1] as string);
        let spk: Uint8Array;
        try {
          spk = ledger.scriptOf(addr);
        } catch {
          return text("Invalid Bitcoin address", 400);
        }
        return json({ address: addr, ...ledger.stats(spk) });
      }
      m = /^\/tx\/([0-9a-f]{64})\/(hex|status)$/.exec(path);
      if (req.method === "GET" && m) {
        const tx = ledger.txs.get(m[1] as string);
        if (!tx) return text("Transaction not found", 404);
        return m[2] === "hex" ? text(tx.hex) : json(status(tx.height));
      }
      m = /^\/tx\/([0-9a-f]{64})\/outspend\/(\d+)$/.exec(path);
      if (req.method === "GET" && m) {
        const out = ledger.outputs.get(`${m[1]}:${m[2]}`);
        if (!out?.spentBy) return json({ spent: false });
        const spender = ledger.txs.get(out.spentBy.txid);
        return json({ spent: true, txid: out.spentBy.txid, vin: out.spentBy.vin, status: status(spender?.height) });
      }
      return text("Not Found", 404);
    },
  });
  const stop = async () => {
    await server.stop(true);
  };
  return {
    url: `http://127.0.0.1:${server.port}`,
    ledger,
    get override() {
      return state.override;
    },
    set override(o) {
      state.override = o;
    },
    requests,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * A signed P2WPKH spend of one output, built with bitcoinjs (for chain tests that need a real
 * transaction to broadcast). `key` is an ECPair-like signer.
 */
export function signedSpend(
  key: { publicKey: Uint8Array; sign(hash: Uint8Array): Uint8Array },
  prev: { txid: string; vout: number; value: bigint },
  to: Uint8Array,
  value: bigint,
  network: ChainNetwork = "regtest",
): Transaction {
  const net = bitcoinNetwork(network);
  const psbt = new Psbt({ network: net });
  const own = payments.p2wpkh({ pubkey: key.publicKey, network: net }).output as Uint8Array;
  psbt.addInput({ hash: prev.txid, index: prev.vout, witnessUtxo: { script: own, value: prev.value } });
  psbt.addOutput({ script: to, value });
  psbt.signInput(0, key);
  psbt.finalizeAllInputs();
  return psbt.extractTransaction();
}

/** Debian's interpreter with python3-bitcoinlib (test/fixtures/verify_tx.py runs on it). */
export const BITCOINLIB_PYTHON = "/usr/bin/python3";
const VERIFY_TX = new URL("../fixtures/verify_tx.py", import.meta.url).pathname;

/**
 * A `FakeLedger.judge` that asks python-bitcoinlib (plus verify_tx.py's labelled consensus checks):
 * the error, or undefined when every input and the transaction are valid for the next block.
 */
export function bitcoinlibJudge(hex: string, prevouts: LedgerOutput[], height: number): string | undefined {
  const request = {
    tx: hex,
    prevouts: prevouts.map((p) => ({ scriptPubKey: Buffer.from(p.script).toString("hex"), amount: Number(p.value) })),
    height,
    medianTime: Math.floor(Date.now() / 1000),
  };
  const run = Bun.spawnSync([BITCOINLIB_PYTHON, VERIFY_TX], { stdin: Buffer.from(JSON.stringify(request)) });
  if (run.exitCode !== 0) return `verify_tx.py failed: ${run.stderr.toString().slice(0, 200)}`;
  const [verdict] = [JSON.parse(run.stdout.toString())].flat() as {
    inputs: { ok: boolean; error: string | null }[];
    tx: { ok: boolean; error: string | null };
  }[];
  const errors = [verdict?.tx.error, ...(verdict?.inputs.map((i) => i.error) ?? [])].filter(Boolean);
  return verdict?.tx.ok && verdict.inputs.every((i) => i.ok) ? undefined : errors.join("; ") || "invalid";
}
