import { Transaction } from "bitcoinjs-lib";
import { z } from "zod";
import {
  type Chain,
  ChainError,
  type ChainTransaction,
  checkTarget,
  checkTxHex,
  checkTxid,
  checkVout,
  DEFAULT_CHAIN_TIMEOUT_MS,
  MAX_SMALL_ANSWER_BYTES,
  MAX_TX_ANSWER_BYTES,
  MAX_UTXO_ANSWER_BYTES,
  type Outpoint,
  type SatPerKvb,
  satPerVbyteToKvb,
  targetAddress,
  targetScript,
  type Utxo,
  type UtxoTarget,
} from "./chain.ts";
import { parseJson, preview, type RemoteResponse, requestText } from "./http.ts";
import { type ChainNetwork, DEFAULT_CHAIN_NETWORK, DEFAULT_ESPLORA_URLS } from "./network.ts";

/**
 * The chain through an Esplora REST server (Blockstream's esplora/electrs, mempool.space), as its
 * API.md documents: plain-text heights, txids and hex; JSON for UTXOs, statuses and fee estimates;
 * amounts always in sats. Every answer is size-capped and schema-checked: the server is untrusted.
 */

/** Address lookups in flight at once: public servers rate-limit bursts. */
export const ESPLORA_CONCURRENCY = 4;

export interface EsploraChainInit {
  network?: ChainNetwork;
  /** Base URL, API prefix included (https://blockstream.info/api). Default per network. */
  url?: string;
  timeoutMs?: number;
}

const Height = z.number().int().nonnegative();

const Status = z.object({
  confirmed: z.boolean(),
  block_height: Height.optional(),
});

const UtxoList = z
  .array(
    z.object({
      txid: z.string().regex(/^[0-9a-f]{64}$/),
      vout: z.number().int().nonnegative(),
      // Amounts are sats (API.md); a safe integer, so converting to bigint is exact.
      value: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
      status: Status,
    }),
  )
  .max(100_000);

const Outspend = z.object({ spent: z.boolean() });

const TxoStats = z.object({ funded_txo_count: z.number().int().nonnegative() });
const AddressStats = z.object({ chain_stats: TxoStats, mempool_stats: TxoStats });

/** Confirmation target (blocks, as a string key) -> sat/vB. */
const FeeEstimates = z.record(z.string().regex(/^\d{1,4}$/), z.number().nonnegative());

export class EsploraChain implements Chain {
  readonly network: ChainNetwork;
  readonly url: string;
  readonly #timeoutMs: number;

  constructor(init: EsploraChainInit = {}) {
    this.network = init.network ?? DEFAULT_CHAIN_NETWORK;
    this.url = (init.url ?? DEFAULT_ESPLORA_URLS[this.network]).replace(/\/+$/, "");
    this.#timeoutMs = init.timeoutMs ?? DEFAULT_CHAIN_TIMEOUT_MS;
  }

  async tipHeight(signal?: AbortSignal): Promise<number> {
    const text = (await this.#ok("/blocks/tip/height", MAX_SMALL_ANSWER_BYTES, signal)).trim();
    return plainHeight(text, "the tip height");
  }

  async feeRate(targetBlocks: number, signal?: AbortSignal): Promise<SatPerKvb> {
    checkTarget(targetBlocks);
    const text = await this.#ok("/fee-estimates", MAX_SMALL_ANSWER_BYTES, signal);
    const table = parseJson(text, FeeEstimates, "Esplora /fee-estimates", ChainError);
    // The estimate for the largest target not beyond the one asked for: confirming sooner also confirms in time.
    let best: { target: number; rate: number } | undefined;
    for (const [key, rate] of Object.entries(table)) {
      const target = Number(key);
      if (target <= targetBlocks && (!best || target > best.target)) best = { target, rate };
    }
    if (!best) {
      throw new ChainError(`Esplora has no fee estimate for ${targetBlocks} blocks`, {
        reason: "unavailable",
        hint: "give a fee rate yourself (a fresh regtest chain has no fee history)",
      });
    }
    return satPerVbyteToKvb(best.rate);
  }

  async utxos(targets: readonly UtxoTarget[], signal?: AbortSignal): Promise<Utxo[]> {
    const found = await eachLimited(targets, async (t) => {
      const script = targetScript(t, this.network);
      const path = `/address/${encodeURIComponent(targetAddress(t, this.network))}/utxo`;
      const text = await this.#ok(path, MAX_UTXO_ANSWER_BYTES, signal);
      return parseJson(text, UtxoList, `Esplora ${path}`, ChainError).map((u) => ({
        txid: u.txid,
        vout: u.vout,
        value: BigInt(u.value),
        script,
        height: u.status.confirmed ? u.status.block_height : undefined,
      }));
    });
    return found.flat();
  }

  /** GET /address/:address: an address was used when any output ever paid it (chain or mempool). */
  wasUsed(targets: readonly UtxoTarget[], signal?: AbortSignal): Promise<boolean[]> {
    return eachLimited(targets, async (t) => {
      const path = `/address/${encodeURIComponent(targetAddress(t, this.network))}`;
      const text = await this.#ok(path, MAX_SMALL_ANSWER_BYTES, signal);
      const stats = parseJson(text, AddressStats, `Esplora ${path}`, ChainError);
      return stats.chain_stats.funded_txo_count + stats.mempool_stats.funded_txo_count > 0;
    });
  }

  async transaction(txid: string, signal?: AbortSignal): Promise<ChainTransaction | undefined> {
    checkTxid(txid);
    const hexAnswer = await this.#get(`/tx/${txid}/hex`, MAX_TX_ANSWER_BYTES, signal);
    if (hexAnswer.status === 404) return undefined;
    const hex = okText(hexAnswer, `/tx/${txid}/hex`).trim();
    checkHexIsTx(hex, txid);
    const statusText = await this.#ok(`/tx/${txid}/status`, MAX_SMALL_ANSWER_BYTES, signal);
    const status = parseJson(statusText, Status, `Esplora /tx/${txid}/status`, ChainError);
    if (!status.confirmed || status.block_height === undefined) return { txid, hex, confirmations: 0 };
    const tip = await this.tipHeight(signal);
    return { txid, hex, confirmations: Math.max(1, tip - status.block_height + 1) };
  }

  async broadcast(hex: string, signal?: AbortSignal): Promise<string> {
    const body = checkTxHex(hex);
    const expected = Transaction.fromHex(body).getId();
    const answer = await this.#request("/tx", MAX_SMALL_ANSWER_BYTES, signal, body);
    if (answer.status >= 400) {
      // Esplora passes bitcoind's refusal on: "sendrawtransaction RPC error: {"code":-26,...}".
      throw new ChainError(`Esplora refused the transaction: ${preview(answer.text)}`, {
        reason: "rpc",
        status: answer.status,
      });
    }
    const txid = okText(answer, "/tx").trim();
    if (txid !== expected) {
      throw new ChainError(`Esplora answered txid "${preview(txid)}" for a transaction whose id is ${expected}`, {
        reason: "shape",
        status: answer.status,
      });
    }
    return txid;
  }

  async isSpent(outpoint: Outpoint, signal?: AbortSignal): Promise<boolean> {
    const path = `/tx/${checkTxid(outpoint.txid)}/outspend/${checkVout(outpoint.vout)}`;
    const text = await this.#ok(path, MAX_SMALL_ANSWER_BYTES, signal);
    return parseJson(text, Outspend, `Esplora ${path}`, ChainError).spent;
  }

  #request(path: string, maxBytes: number, signal: AbortSignal | undefined, body?: string): Promise<RemoteResponse> {
    return requestText(
      {
        service: "Esplora",
        url: `${this.url}${path}`,
        method: body === undefined ? "GET" : "POST",
        headers: body === undefined ? {} : { "content-type": "text/plain" },
        body,
        maxBytes,
        timeoutMs: this.#timeoutMs,
        signal,
      },
      ChainError,
    );
  }

  #get(path: string, maxBytes: number, signal: AbortSignal | undefined): Promise<RemoteResponse> {
    return this.#request(path, maxBytes, signal);
  }

  async #ok(path: string, maxBytes: number, signal: AbortSignal | undefined): Promise<string> {
    return okText(await this.#get(path, maxBytes, signal), path);
  }
}

/** `f` over `items`, at most ESPLORA_CONCURRENCY at once, results in order. */
async function eachLimited<T, R>(items: readonly T[], f: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(ESPLORA_CONCURRENCY, items.length) }, worker));
  return out;
}

function okText(answer: RemoteResponse, path: string): string {
  if (answer.status >= 200 && answer.status < 300) return answer.text;
  throw new ChainError(`Esplora ${path} answered HTTP ${answer.status}: ${preview(answer.text)}`, {
    reason: "http",
    status: answer.status,
  });
}

function plainHeight(text: string, what: string): number {
  if (!/^\d{1,10}$/.test(text)) {
    throw new ChainError(`Esplora sent "${preview(text)}" for ${what}, not a block height`, { reason: "shape" });
  }
  return Number(text);
}

/** A server that answers another transaction's bytes for a txid is caught here, not trusted. */
function checkHexIsTx(hex: string, txid: string): void {
  let id: string;
  try {
    id = Transaction.fromHex(checkTxHex(hex)).getId();
  } catch (err) {
    throw new ChainError(`Esplora sent bytes for ${txid} that are not a transaction`, { reason: "shape", cause: err });
  }
  if (id !== txid) throw new ChainError(`Esplora sent transaction ${id} when asked for ${txid}`, { reason: "shape" });
}
