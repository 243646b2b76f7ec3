import { readFileSync, statSync } from "node:fs";
import { Transaction } from "bitcoinjs-lib";
import { z } from "zod";
import { ConfigError, errorMessage } from "../../util/errors.ts";
import {
  btcToSats,
  type Chain,
  ChainError,
  type ChainTransaction,
  checkTarget,
  checkTxHex,
  checkTxid,
  checkVout,
  clampFeeRate,
  DEFAULT_CHAIN_TIMEOUT_MS,
  MAX_SMALL_ANSWER_BYTES,
  MAX_TX_ANSWER_BYTES,
  MAX_UTXO_ANSWER_BYTES,
  type Outpoint,
  type SatPerKvb,
  targetScript,
  type Utxo,
  type UtxoTarget,
} from "./chain.ts";
import { parseJson, preview, requestText } from "./http.ts";
import { type ChainNetwork, DEFAULT_BITCOIND_URLS, DEFAULT_CHAIN_NETWORK } from "./network.ts";

/**
 * The chain through Bitcoin Core's JSON-RPC over HTTP (basic auth with rpcuser/rpcpassword, or the
 * `.cookie` file bitcoind writes). Unspent outputs come from `scantxoutset`, which needs no wallet
 * on the node but reads only the UTXO set: outputs still in the mempool are not seen, so a wallet on
 * this backend reports unconfirmed balances as zero. JSON-RPC 1.0 envelopes by default (every Core
 * version); "2.0" (Core 28+) answers RPC errors with HTTP 200, which is handled the same way.
 */

/** Deadline for `scantxoutset`: it reads the whole UTXO set, minutes on mainnet. */
export const SCAN_TIMEOUT_MS = 10 * 60_000;

/** Largest `.cookie` file read ("__cookie__:" and 64 hex characters; anything much larger is not one). */
export const MAX_COOKIE_BYTES = 1024;

/** bitcoind's RPC_INVALID_ADDRESS_OR_KEY: getrawtransaction's "No such mempool or blockchain transaction". */
export const RPC_INVALID_ADDRESS_OR_KEY = -5;

export type BitcoindAuth = { user: string; password: string } | { cookieFile: string };

export interface BitcoindChainInit {
  network?: ChainNetwork;
  /** http://host:port (default: Bitcoin Core's RPC port for the network on 127.0.0.1). */
  url?: string;
  auth: BitcoindAuth;
  timeoutMs?: number;
  scanTimeoutMs?: number;
  jsonrpc?: "1.0" | "2.0";
}

const RpcEnvelope = z.object({
  result: z.unknown().optional(),
  error: z
    .object({ code: z.number().int(), message: z.string().max(10_000) })
    .nullable()
    .optional(),
  id: z.union([z.number(), z.string(), z.null()]).optional(),
});

const Txid = z.string().regex(/^[0-9a-f]{64}$/);
const Btc = z.number().nonnegative();

const SmartFee = z.object({
  feerate: Btc.optional(),
  errors: z.array(z.string().max(1000)).max(20).optional(),
  blocks: z.number().int(),
});

const Scan = z.object({
  success: z.boolean(),
  unspents: z
    .array(
      z.object({
        txid: Txid,
        vout: z.number().int().nonnegative(),
        scriptPubKey: z.string().regex(/^[0-9a-f]*$/),
        amount: Btc,
        height: z.number().int().nonnegative(),
      }),
    )
    .max(100_000),
});

const RawTx = z.object({
  txid: Txid,
  hex: z.string().regex(/^[0-9a-f]+$/),
  confirmations: z.number().int().nonnegative().optional(),
});

export class BitcoindChain implements Chain {
  readonly network: ChainNetwork;
  readonly url: string;
  readonly #auth: BitcoindAuth;
  readonly #timeoutMs: number;
  readonly #scanTimeoutMs: number;
  readonly #jsonrpc: "1.0" | "2.0";
  #nextId = 1;

  constructor(init: BitcoindChainInit) {
    this.network = init.network ?? DEFAULT_CHAIN_NETWORK;
    this.url = (init.url ?? DEFAULT_BITCOIND_URLS[this.network]).replace(/\/+$/, "");
    this.#auth = init.auth;
    this.#timeoutMs = init.timeoutMs ?? DEFAULT_CHAIN_TIMEOUT_MS;
    this.#scanTimeoutMs = init.scanTimeoutMs ?? SCAN_TIMEOUT_MS;
    this.#jsonrpc = init.jsonrpc ?? "1.0";
  }

  tipHeight(signal?: AbortSignal): Promise<number> {
    return this.call("getblockcount", [], z.number().int().nonnegative(), { signal });
  }

  async feeRate(targetBlocks: number, signal?: AbortSignal): Promise<SatPerKvb> {
    const fee = await this.call("estimatesmartfee", [checkTarget(targetBlocks)], SmartFee, { signal });
    if (fee.feerate === undefined) {
      throw new ChainError(
        `bitcoind has no fee estimate for ${targetBlocks} blocks: ${preview((fee.errors ?? []).join("; "))}`,
        { reason: "unavailable", hint: "give a fee rate yourself (a fresh regtest chain has no fee history)" },
      );
    }
    // estimatesmartfee answers BTC per kvB; in sats that is sat/kvB.
    return clampFeeRate(btcToSats(fee.feerate));
  }

  async utxos(targets: readonly UtxoTarget[], signal?: AbortSignal): Promise<Utxo[]> {
    if (targets.length === 0) return [];
    const scripts = new Map<string, Uint8Array>();
    const descriptors = targets.map((t) => {
      const script = targetScript(t, this.network);
      const hex = Buffer.from(script).toString("hex");
      scripts.set(hex, script);
      return typeof t === "string" ? `addr(${t})` : `raw(${hex})`;
    });
    const scan = await this.call("scantxoutset", ["start", descriptors.map((desc) => ({ desc }))], Scan, {
      signal,
      maxBytes: MAX_UTXO_ANSWER_BYTES,
      timeoutMs: this.#scanTimeoutMs,
    });
    if (!scan.success) throw new ChainError("bitcoind's scantxoutset did not complete", { reason: "rpc" });
    return scan.unspents.map((u) => {
      const script = scripts.get(u.scriptPubKey);
      if (!script)
        throw new ChainError("bitcoind's scantxoutset returned an output nobody asked for", { reason: "shape" });
      return { txid: u.txid, vout: u.vout, value: btcToSats(u.amount), script, height: u.height };
    });
  }

  async transaction(txid: string, signal?: AbortSignal): Promise<ChainTransaction | undefined> {
    let raw: z.output<typeof RawTx>;
    try {
      raw = await this.call("getrawtransaction", [checkTxid(txid), true], RawTx, {
        signal,
        maxBytes: MAX_TX_ANSWER_BYTES,
      });
    } catch (err) {
      if (err instanceof ChainError && err.rpcCode === RPC_INVALID_ADDRESS_OR_KEY) return undefined;
      throw err;
    }
    let id: string | undefined;
    try {
      id = Transaction.fromHex(raw.hex).getId();
    } catch {
      id = undefined;
    }
    if (id !== txid || raw.txid !== txid) {
      throw new ChainError(`bitcoind answered another transaction's bytes for ${txid}`, { reason: "shape" });
    }
    return { txid, hex: raw.hex, confirmations: raw.confirmations ?? 0 };
  }

  async broadcast(hex: string, signal?: AbortSignal): Promise<string> {
    const body = checkTxHex(hex);
    const expected = Transaction.fromHex(body).getId();
    const txid = await this.call("sendrawtransaction", [body], Txid, { signal });
    if (txid !== expected) {
      throw new ChainError(`bitcoind answered txid ${txid} for a transaction whose id is ${expected}`, {
        reason: "shape",
      });
    }
    return txid;
  }

  async isSpent(outpoint: Outpoint, signal?: AbortSignal): Promise<boolean> {
    // include_mempool=true: an output a mempool transaction spends counts as spent. gettxout answers
    // null both for a spent output and an unknown one; either way it cannot be spent again.
    const out = await this.call("gettxout", [checkTxid(outpoint.txid), checkVout(outpoint.vout), true], z.unknown(), {
      signal,
    });
    return out === null;
  }

  /** One JSON-RPC call; `result` checked against `schema`. Public for the few calls the interface lacks. */
  async call<S extends z.ZodType>(
    method: string,
    params: unknown[],
    schema: S,
    options: { signal?: AbortSignal; maxBytes?: number; timeoutMs?: number } = {},
  ): Promise<z.output<S>> {
    const id = this.#nextId++;
    const answer = await requestText(
      {
        service: "bitcoind",
        url: this.url,
        method: "POST",
        headers: { "content-type": "application/json", authorization: this.#authorization() },
        body: JSON.stringify({ jsonrpc: this.#jsonrpc, id, method, params }),
        maxBytes: options.maxBytes ?? MAX_SMALL_ANSWER_BYTES,
        timeoutMs: options.timeoutMs ?? this.#timeoutMs,
        signal: options.signal,
      },
      ChainError,
    );
    if (answer.status === 401 || answer.status === 403) {
      throw new ChainError(`bitcoind refused the RPC credentials (HTTP ${answer.status})`, {
        reason: "http",
        status: answer.status,
        hint: "check rpcuser/rpcpassword (or the cookie file) and rpcallowip in bitcoin.conf",
      });
    }
    // Legacy JSON-RPC answers RPC errors with HTTP 500 (404 for an unknown method) and the envelope in
    // the body; a non-200 answer without an envelope is the HTTP server's own failure.
    let envelope: z.output<typeof RpcEnvelope>;
    try {
      envelope = parseJson(answer.text, RpcEnvelope, `bitcoind ${method}`, ChainError, answer.status);
    } catch (err) {
      if (answer.status === 200) throw err;
      throw new ChainError(`bitcoind answered HTTP ${answer.status}: ${preview(answer.text)}`, {
        reason: "http",
        status: answer.status,
        cause: err,
      });
    }
    if (envelope.error) {
      throw new ChainError(`bitcoind ${method} failed: ${preview(envelope.error.message)} (${envelope.error.code})`, {
        reason: "rpc",
        status: answer.status,
        rpcCode: envelope.error.code,
      });
    }
    if (answer.status !== 200) {
      throw new ChainError(`bitcoind answered HTTP ${answer.status} without an error`, {
        reason: "http",
        status: answer.status,
      });
    }
    if (envelope.id !== id) {
      throw new ChainError(`bitcoind answered request ${String(envelope.id)} to request ${id}`, { reason: "shape" });
    }
    const parsed = schema.safeParse(envelope.result ?? null);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ChainError(`bitcoind ${method}: the result is not what was expected (${issue?.message ?? "invalid"})`, {
        reason: "shape",
        cause: parsed.error,
      });
    }
    return parsed.data;
  }

  #authorization(): string {
    const auth = this.#auth;
    const pair = "cookieFile" in auth ? readCookie(auth.cookieFile) : `${auth.user}:${auth.password}`;
    return `Basic ${Buffer.from(pair, "utf8").toString("base64")}`;
  }
}

/** Read on every call: bitcoind writes a new cookie each time it starts. */
function readCookie(path: string): string {
  try {
    if (statSync(path).size > MAX_COOKIE_BYTES) throw new Error(`larger than ${MAX_COOKIE_BYTES} bytes`);
    const text = readFileSync(path, "utf8").trim();
    if (!/^[^:\s]+:\S+$/.test(text)) throw new Error("not user:password");
    return text;
  } catch (err) {
    throw new ConfigError(`the bitcoind cookie file ${path} cannot be used: ${errorMessage(err)}`, {
      hint: "point it at the .cookie in bitcoind's data directory (for the right network), or use rpcuser/rpcpassword",
      cause: err,
    });
  }
}
