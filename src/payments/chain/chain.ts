import { address as btcAddress } from "bitcoinjs-lib";
import { InvalidInputError } from "../../util/errors.ts";
import { MAX_MSAT, MSAT_PER_SAT } from "../amount.ts";
import { type RemoteErrorOptions, RemoteServiceError } from "./http.ts";
import { bitcoinNetwork, type ChainNetwork } from "./network.ts";

/**
 * Read and write access to the Bitcoin chain, whatever answers it: an Esplora REST server or
 * bitcoind's JSON-RPC. On-chain values are whole sats in a `bigint` (as bitcoinjs keeps them): an
 * output cannot carry millisatoshis. Fee rates are sat per 1000 virtual bytes (`SatPerKvb`), Bitcoin
 * Core's own unit, so a rate below 1 sat/vB stays exact and no float ever reaches a fee.
 */

/** A fee rate in sat per 1000 vbytes (sat/kvB); 1 sat/vB is 1000n. */
export type SatPerKvb = bigint;

/** Most sats that can exist (21 million bitcoin). */
export const MAX_SATS = MAX_MSAT / MSAT_PER_SAT;

/**
 * The floor under every fee estimate: 1 sat/vB, Bitcoin Core's default -minrelaytxfee before v29 and
 * what most nodes still relay. An estimate below it would make a transaction nobody forwards.
 */
export const MIN_RELAY_FEE_RATE: SatPerKvb = 1000n;

/** Fee estimates above this (1000 sat/vB) are treated as a broken or hostile server's answer. */
export const MAX_SANE_FEE_RATE: SatPerKvb = 1_000_000n;

/**
 * Most bytes of one answer about a single transaction (its hex, or bitcoind's verbose JSON of it). A
 * standard transaction is at most 400,000 weight units (Bitcoin Core policy MAX_STANDARD_TX_WEIGHT),
 * so at most 200 kB of hex; verbose JSON is a few times that. 16 MiB leaves room for any of them.
 */
export const MAX_TX_ANSWER_BYTES = 16 * 1024 * 1024;

/** Most bytes of an answer listing unspent outputs (a few thousand outputs of a busy address). */
export const MAX_UTXO_ANSWER_BYTES = 4 * 1024 * 1024;

/** Most bytes of every other answer (a height, a status, a fee table, a txid). */
export const MAX_SMALL_ANSWER_BYTES = 64 * 1024;

/** Deadline of one call to a chain backend unless the caller gives another. */
export const DEFAULT_CHAIN_TIMEOUT_MS = 30_000;

export interface Outpoint {
  txid: string;
  vout: number;
}

export interface Utxo extends Outpoint {
  /** Whole sats. */
  value: bigint;
  /** The output's scriptPubKey. */
  script: Uint8Array;
  /** The block height it was confirmed at; undefined while it is only in the mempool. */
  height: number | undefined;
}

export interface ChainTransaction {
  txid: string;
  hex: string;
  /** 0 while in the mempool. */
  confirmations: number;
}

/** What to look up outputs for: an address, or a scriptPubKey's bytes. */
export type UtxoTarget = string | Uint8Array;

export interface Chain {
  readonly network: ChainNetwork;
  /** Height of the best block. */
  tipHeight(signal?: AbortSignal): Promise<number>;
  /** Fee rate to confirm within `targetBlocks`, at least `MIN_RELAY_FEE_RATE`. */
  feeRate(targetBlocks: number, signal?: AbortSignal): Promise<SatPerKvb>;
  /** Unspent outputs paying any of `targets`, confirmed or (where the backend sees it) in the mempool. */
  utxos(targets: readonly UtxoTarget[], signal?: AbortSignal): Promise<Utxo[]>;
  /**
   * Whether each target has ever been paid (in a block or the mempool), spent or not. Optional: only
   * a backend with an address index has it (Esplora; bitcoind without a wallet does not). A wallet
   * uses it for its gap limit, so addresses whose coins were all spent still count as used.
   */
  wasUsed?(targets: readonly UtxoTarget[], signal?: AbortSignal): Promise<boolean[]>;
  /** A transaction by id; undefined when the backend does not know it. */
  transaction(txid: string, signal?: AbortSignal): Promise<ChainTransaction | undefined>;
  /** Sends a signed raw transaction; returns its txid. */
  broadcast(hex: string, signal?: AbortSignal): Promise<string>;
  /** Whether the output is no longer unspent (spent in a block or by a mempool transaction). */
  isSpent(outpoint: Outpoint, signal?: AbortSignal): Promise<boolean>;
}

/** The chain backend failed or answered something unusable (HTTP error, bad JSON, RPC error). */
export class ChainError extends RemoteServiceError {
  /** bitcoind's RPC error code, when the failure was one. */
  readonly rpcCode: number | undefined;

  constructor(message: string, options: RemoteErrorOptions & { rpcCode?: number }) {
    super(message, options);
    this.rpcCode = options.rpcCode;
  }
}

const TXID = /^[0-9a-f]{64}$/;

/** A txid as the backends print it (lowercase hex, 32 bytes), refused before it goes into a URL. */
export function checkTxid(txid: string): string {
  if (!TXID.test(txid)) throw new InvalidInputError(`"${txid.slice(0, 80)}" is not a transaction id`);
  return txid;
}

export function checkVout(vout: number): number {
  if (!Number.isInteger(vout) || vout < 0 || vout > 0xffff_ffff) {
    throw new InvalidInputError(`${vout} is not an output index`);
  }
  return vout;
}

/** Raw transaction hex, refused before it is sent anywhere. */
export function checkTxHex(hex: string): string {
  if (hex.length === 0 || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex)) {
    throw new InvalidInputError("the transaction is not hex");
  }
  return hex.toLowerCase();
}

/** The scriptPubKey of a target (an address is checked against the network). */
export function targetScript(target: UtxoTarget, network: ChainNetwork): Uint8Array {
  if (typeof target !== "string") return target;
  try {
    return btcAddress.toOutputScript(target, bitcoinNetwork(network));
  } catch (err) {
    throw new InvalidInputError(`"${target.slice(0, 100)}" is not a ${network} address`, { cause: err });
  }
}

/** The address form of a target, for backends that look up by address (every standard script has one). */
export function targetAddress(target: UtxoTarget, network: ChainNetwork): string {
  if (typeof target === "string") {
    targetScript(target, network);
    return target;
  }
  try {
    return btcAddress.fromOutputScript(target, bitcoinNetwork(network));
  } catch (err) {
    throw new InvalidInputError("this output script has no address form, so Esplora cannot look it up", {
      cause: err,
    });
  }
}

/**
 * A BTC amount as bitcoind prints it (a JSON number with at most 8 decimals) in whole sats.
 * `toFixed(8)` gives back exactly the decimal bitcoind wrote: every amount up to 21e6 BTC has 16 or
 * fewer significant digits, which a double round-trips, so no float rounding reaches the sats.
 */
export function btcToSats(btc: number): bigint {
  if (!Number.isFinite(btc) || btc < 0) throw new InvalidInputError(`${btc} is not a BTC amount`);
  const [whole = "0", frac = ""] = btc.toFixed(8).split(".");
  const sats = BigInt(whole) * 100_000_000n + BigInt(frac.padEnd(8, "0"));
  if (sats > MAX_SATS) throw new InvalidInputError(`${btc} BTC is more than can exist`);
  return sats;
}

/** A sat/vB estimate (a float from Esplora) as sat/kvB, rounded up, within the floor and sanity cap. */
export function satPerVbyteToKvb(rate: number): SatPerKvb {
  if (!Number.isFinite(rate) || rate < 0) throw new InvalidInputError(`${rate} is not a fee rate`);
  const kvb = BigInt(Math.ceil(rate * 1000));
  return clampFeeRate(kvb);
}

export function clampFeeRate(rate: SatPerKvb): SatPerKvb {
  if (rate > MAX_SANE_FEE_RATE) {
    throw new InvalidInputError(`a fee rate of ${rate / 1000n} sat/vB is beyond any sane estimate`);
  }
  return rate < MIN_RELAY_FEE_RATE ? MIN_RELAY_FEE_RATE : rate;
}

/** The confirmation targets a fee estimate may ask for (bitcoind's estimatesmartfee accepts 1..1008). */
export function checkTarget(targetBlocks: number): number {
  if (!Number.isInteger(targetBlocks) || targetBlocks < 1 || targetBlocks > 1008) {
    throw new InvalidInputError(`${targetBlocks} is not a confirmation target (1 to 1008 blocks)`);
  }
  return targetBlocks;
}
