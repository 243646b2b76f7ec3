import * as ecc from "@bitcoinerlab/secp256k1";
import { address as btcAddress, Psbt } from "bitcoinjs-lib";
import { InvalidInputError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import type { Chain, Outpoint, SatPerKvb, Utxo } from "../chain/chain.ts";
import { bitcoinNetwork } from "../chain/network.ts";
import { checkFeeRate, checkSendAmount, dustThreshold, type Selection, selectCoins } from "./coin-select.ts";
import type { KeySigner, WalletKey } from "./key.ts";

/**
 * An on-chain P2WPKH wallet over any `Chain`: finds its coins by scanning derived addresses, builds
 * and signs sends with change, and hands coins and signers to a channel opener. It keeps no state of
 * its own: every call reads the chain, so the seed file is the whole backup.
 *
 * The gap limit counts unused addresses. Where the chain knows address history (`Chain.wasUsed`,
 * Esplora) an address is used once anything paid it; without it (bitcoind's scantxoutset) only
 * addresses holding coins count, so a run of GAP_LIMIT spent-out addresses hides coins beyond it.
 */

const log = logger("payments:wallet");

/** Addresses past the last one holding coins that are still scanned (BIP44's address gap limit). */
export const GAP_LIMIT = 20;
/** Most addresses scanned per branch, whatever the chain answers: bounds a lying server's cost. */
export const MAX_SCAN_ADDRESSES = 10_000;
/** Confirmations a coin needs before the wallet spends it. */
export const DEFAULT_MIN_CONFIRMATIONS = 1;
/**
 * A P2WSH output script (OP_0 PUSH32 <hash>, 34 bytes): what a channel funding output is (BOLT 3
 * funding output, a 2-of-2 P2WSH). Used to size a funding transaction before its script is known.
 */
const P2WSH_PLACEHOLDER = Uint8Array.from([0x00, 0x20, ...new Uint8Array(32)]);

export interface WalletInit {
  key: WalletKey;
  chain: Chain;
  gapLimit?: number;
  minConfirmations?: number;
}

export interface WalletCoin extends Utxo {
  /** The key that spends it (for `Psbt.signInput`). */
  signer: KeySigner;
}

export interface Balance {
  /** Whole sats in outputs with at least `minConfirmations` confirmations. */
  confirmed: bigint;
  /** Whole sats still in the mempool or short of `minConfirmations`. */
  unconfirmed: bigint;
}

export interface WalletScan {
  coins: WalletCoin[];
  tip: number;
  /** The first receive and change index after the last one holding coins. */
  nextReceive: number;
  nextChange: number;
}

export interface ChangeOutput {
  address: string;
  script: Uint8Array;
  value: bigint;
  signer: KeySigner;
}

export interface BuiltSend {
  txid: string;
  hex: string;
  /** The signed PSBT before finalizing (partial signatures still in it), base64. */
  psbt: string;
  amount: bigint;
  fee: bigint;
  vsize: number;
  inputs: Outpoint[];
  change: ChangeOutput | undefined;
}

export interface FundingInputs {
  /** Coins to spend, each with its signer; add them with `witnessUtxo: { script, value }`. */
  inputs: WalletCoin[];
  fee: bigint;
  change: ChangeOutput | undefined;
}

export class Wallet {
  readonly key: WalletKey;
  readonly chain: Chain;
  readonly gapLimit: number;
  readonly minConfirmations: number;

  constructor(init: WalletInit) {
    if (init.key.network !== init.chain.network) {
      throw new InvalidInputError(`the wallet key is for ${init.key.network} but the chain is ${init.chain.network}`);
    }
    this.key = init.key;
    this.chain = init.chain;
    this.gapLimit = init.gapLimit ?? GAP_LIMIT;
    this.minConfirmations = init.minConfirmations ?? DEFAULT_MIN_CONFIRMATIONS;
  }

  /** Every coin on the wallet's receive and change addresses, found with the gap limit. */
  async scan(signal?: AbortSignal): Promise<WalletScan> {
    const tip = await this.chain.tipHeight(signal);
    const coins: WalletCoin[] = [];
    const branches = [
      { derive: (i: number) => this.key.receive(i), lastUsed: -1, from: 0 },
      { derive: (i: number) => this.key.change(i), lastUsed: -1, from: 0 },
    ];
    for (;;) {
      const batch: KeySigner[] = [];
      for (const b of branches) {
        const end = Math.min(b.lastUsed + this.gapLimit, MAX_SCAN_ADDRESSES - 1);
        for (let i = b.from; i <= end; i++) batch.push(b.derive(i));
        b.from = end + 1;
      }
      if (batch.length === 0) break;
      const markUsed = (signer: KeySigner) => {
        const branch = branches[signer.branch === "receive" ? 0 : 1] as (typeof branches)[number];
        branch.lastUsed = Math.max(branch.lastUsed, signer.index);
      };
      // With address history, spent-out addresses count as used too, and only used ones are asked for coins.
      let lookup = batch;
      if (this.chain.wasUsed) {
        const used = await this.chain.wasUsed(
          batch.map((s) => s.address),
          signal,
        );
        lookup = batch.filter((_, i) => used[i] === true);
        for (const s of lookup) markUsed(s);
      }
      if (lookup.length === 0) continue;
      // One lookup per round for both branches (bitcoind scans the UTXO set once per call).
      const byScript = new Map(lookup.map((s) => [Buffer.from(s.script).toString("hex"), s]));
      const utxos = await this.chain.utxos(
        lookup.map((s) => s.address),
        signal,
      );
      for (const utxo of utxos) {
        const signer = byScript.get(Buffer.from(utxo.script).toString("hex"));
        if (!signer) continue;
        coins.push({ ...utxo, signer });
        markUsed(signer);
      }
    }
    const [receive, change] = branches as [(typeof branches)[number], (typeof branches)[number]];
    return { coins: dedupe(coins), tip, nextReceive: receive.lastUsed + 1, nextChange: change.lastUsed + 1 };
  }

  async balance(signal?: AbortSignal): Promise<Balance> {
    const { coins, tip } = await this.scan(signal);
    let confirmed = 0n;
    let unconfirmed = 0n;
    for (const c of coins) {
      if (this.#spendable(c, tip)) confirmed += c.value;
      else unconfirmed += c.value;
    }
    return { confirmed, unconfirmed };
  }

  /** The receive address after the last one holding coins (fresh for each payment that arrives). */
  async receiveAddress(signal?: AbortSignal): Promise<string> {
    return this.key.receive((await this.scan(signal)).nextReceive).address;
  }

  /**
   * A signed transaction paying `amountSats` to `toAddress` at `feeRate`, change to a fresh change
   * address. Nothing is broadcast. Refuses: an address of another network, amounts of zero or less or
   * above 21 million BTC, dust, fee rates outside [relay minimum, sanity cap], insufficient funds.
   */
  async buildSend(toAddress: string, amountSats: bigint, feeRate: SatPerKvb, signal?: AbortSignal): Promise<BuiltSend> {
    checkSendAmount(amountSats);
    checkFeeRate(feeRate);
    const to = this.#outputScript(toAddress);
    const dust = dustThreshold(to);
    if (amountSats < dust) {
      throw new InvalidInputError(`${amountSats} sats is below the dust limit of ${dust} sats for that address`);
    }
    const { selection, change } = await this.#select(amountSats, feeRate, to, signal);
    const network = bitcoinNetwork(this.key.network);
    const psbt = new Psbt({ network });
    for (const coin of selection.chosen) {
      psbt.addInput({ hash: coin.txid, index: coin.vout, witnessUtxo: { script: coin.script, value: coin.value } });
    }
    psbt.addOutput({ script: to, value: amountSats });
    if (change) psbt.addOutput({ script: change.script, value: change.value });
    selection.chosen.forEach((coin, i) => {
      psbt.signInput(i, coin.signer);
    });
    if (!psbt.validateSignaturesOfAllInputs((pubkey, hash, sig) => ecc.verify(hash, pubkey, sig))) {
      throw new Error("a signature the wallet just made does not verify");
    }
    const signed = psbt.toBase64();
    psbt.finalizeAllInputs();
    const tx = psbt.extractTransaction();
    log.info("built a send", { txid: tx.getId(), amount: String(amountSats), fee: String(selection.fee) });
    return {
      txid: tx.getId(),
      hex: tx.toHex(),
      psbt: signed,
      amount: amountSats,
      fee: selection.fee,
      vsize: tx.virtualSize(),
      inputs: selection.chosen.map((c) => ({ txid: c.txid, vout: c.vout })),
      change,
    };
  }

  /** `buildSend`, then broadcast through the chain. */
  async send(toAddress: string, amountSats: bigint, feeRate: SatPerKvb, signal?: AbortSignal): Promise<BuiltSend> {
    const built = await this.buildSend(toAddress, amountSats, feeRate, signal);
    await this.chain.broadcast(built.hex, signal);
    log.info("sent", { txid: built.txid });
    return built;
  }

  /**
   * Coins (with signers) and change for a transaction that pays `amountSats` to one output with
   * `outputScript` (default: sized as a P2WSH channel funding output). The caller builds, signs and
   * broadcasts; the coins are not reserved, so two openers at once must not share a wallet.
   */
  async fundingInputs(
    amountSats: bigint,
    feeRate: SatPerKvb,
    outputScript: Uint8Array = P2WSH_PLACEHOLDER,
    signal?: AbortSignal,
  ): Promise<FundingInputs> {
    checkSendAmount(amountSats);
    checkFeeRate(feeRate);
    const { selection, change } = await this.#select(amountSats, feeRate, outputScript, signal);
    return { inputs: selection.chosen, fee: selection.fee, change };
  }

  async #select(
    amount: bigint,
    feeRate: SatPerKvb,
    to: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<{ selection: Selection<WalletCoin>; change: ChangeOutput | undefined }> {
    const scan = await this.scan(signal);
    const spendable = scan.coins.filter((c) => this.#spendable(c, scan.tip));
    const changeKey = this.key.change(scan.nextChange);
    const selection = selectCoins(spendable, amount, feeRate, [to.length], dustThreshold(changeKey.script));
    const change =
      selection.change > 0n
        ? { address: changeKey.address, script: changeKey.script, value: selection.change, signer: changeKey }
        : undefined;
    return { selection, change };
  }

  #spendable(coin: Utxo, tip: number): boolean {
    return coin.height !== undefined && tip - coin.height + 1 >= this.minConfirmations;
  }

  #outputScript(toAddress: string): Uint8Array {
    try {
      return btcAddress.toOutputScript(toAddress.trim(), bitcoinNetwork(this.key.network));
    } catch (err) {
      throw new InvalidInputError(`"${toAddress.slice(0, 100)}" is not a ${this.key.network} address`, {
        hint: "check the address and the network (wallet addresses start with bc1 on mainnet, tb1 on test networks, bcrt1 on regtest)",
        cause: err,
      });
    }
  }
}

/** One entry per outpoint, whatever a backend repeats. */
function dedupe(coins: WalletCoin[]): WalletCoin[] {
  const seen = new Map<string, WalletCoin>();
  for (const c of coins) seen.set(`${c.txid}:${c.vout}`, c);
  return [...seen.values()];
}
