import { InfernetError, InvalidInputError } from "../../util/errors.ts";
import { MAX_SANE_FEE_RATE, MAX_SATS, MIN_RELAY_FEE_RATE, type SatPerKvb } from "../chain/chain.ts";

/**
 * Transaction sizes, dust and coin selection for a P2WPKH wallet, in weight units (BIP141: weight =
 * 4 x non-witness bytes + witness bytes; vsize = weight / 4 rounded up). Fees are computed on the
 * largest size the signed transaction can have, so the real fee rate is never below the one asked.
 */

/** version (4) + locktime (4), times 4, plus the segwit marker and flag (2 witness bytes). */
const TX_FIXED_WEIGHT = 4 * 8 + 2;
/** outpoint (36) + empty scriptSig length (1) + sequence (4), times 4. */
const P2WPKH_INPUT_WEIGHT = 4 * 41;
/**
 * Witness: item count (1), signature length (1) + DER signature with sighash byte (at most 72 with
 * low-S; 71 once low-R ground, as our signer does), pubkey length (1) + compressed pubkey (33).
 */
const P2WPKH_WITNESS_WEIGHT = 1 + 1 + 72 + 1 + 33;

/** Bitcoin Core's DUST_RELAY_TX_FEE: 3 sat/vB, the rate at which an output costs more to spend than it holds. */
export const DUST_RELAY_FEE_RATE: SatPerKvb = 3000n;

/** A P2WPKH output script: OP_0 PUSH20 <hash>, 22 bytes. */
export const P2WPKH_SCRIPT_BYTES = 22;

/** The wallet holds too few (confirmed) coins to pay this (ledger.ts has InsufficientFundsError for book balances). */
export class InsufficientCoinsError extends InfernetError {}

function varIntBytes(n: number): number {
  return n < 0xfd ? 1 : n <= 0xffff ? 3 : 5;
}

/** Serialized size of an output: value (8) + script length + script. */
export function outputBytes(scriptLength: number): number {
  return 8 + varIntBytes(scriptLength) + scriptLength;
}

/** The vsize of a transaction spending `inputs` P2WPKH outputs to outputs with these script lengths. */
export function estimateVsize(inputs: number, outputScriptLengths: readonly number[]): number {
  const counts = varIntBytes(inputs) + varIntBytes(outputScriptLengths.length);
  const outputs = outputScriptLengths.reduce((sum, len) => sum + outputBytes(len), 0);
  const weight = TX_FIXED_WEIGHT + 4 * (counts + outputs) + inputs * (P2WPKH_INPUT_WEIGHT + P2WPKH_WITNESS_WEIGHT);
  return Math.ceil(weight / 4);
}

/** Fee for `vsize` at `rate`, rounded up to the sat. */
export function feeFor(vsize: number, rate: SatPerKvb): bigint {
  return (BigInt(vsize) * rate + 999n) / 1000n;
}

/** BIP141 witness program: version opcode (OP_0, OP_1..OP_16) then one push of 2 to 40 bytes. */
function isWitnessProgram(script: Uint8Array): boolean {
  if (script.length < 4 || script.length > 42) return false;
  const version = script[0] as number;
  if (version !== 0x00 && (version < 0x51 || version > 0x60)) return false;
  return script[1] === script.length - 2;
}

/**
 * The smallest value an output to `script` may carry and still be relayed: Bitcoin Core's
 * GetDustThreshold (policy.cpp), the cost at 3 sat/vB of the output plus the input that would spend
 * it (67 bytes for a witness program, 148 otherwise). 294 sats for P2WPKH, 330 for P2WSH/P2TR, 546 for P2PKH.
 */
export function dustThreshold(script: Uint8Array): bigint {
  const spend = isWitnessProgram(script) ? 32 + 4 + 1 + Math.floor(107 / 4) + 4 : 32 + 4 + 1 + 107 + 4;
  return (BigInt(outputBytes(script.length) + spend) * DUST_RELAY_FEE_RATE) / 1000n;
}

/** An amount of sats a user asked to send, checked (positive, no more than can exist). */
export function checkSendAmount(amount: bigint, what = "amount"): bigint {
  if (amount <= 0n) throw new InvalidInputError(`${what}: ${amount} sats is not more than zero`);
  if (amount > MAX_SATS) throw new InvalidInputError(`${what}: ${amount} sats is more than 21 million bitcoin`);
  return amount;
}

export function checkFeeRate(rate: SatPerKvb): SatPerKvb {
  if (rate < MIN_RELAY_FEE_RATE) {
    throw new InvalidInputError(`a fee rate of ${rate} sat/kvB is below the relay minimum of ${MIN_RELAY_FEE_RATE}`);
  }
  if (rate > MAX_SANE_FEE_RATE) throw new InvalidInputError(`a fee rate of ${rate} sat/kvB is absurdly high`);
  return rate;
}

export interface Selection<C> {
  chosen: C[];
  fee: bigint;
  /** Sats to the change output; 0n when the remainder is dust and goes to the fee instead. */
  change: bigint;
  vsize: number;
}

/**
 * Largest-first selection: the fewest inputs (cheapest to sign and smallest fee), at the cost of
 * merging big coins first. Change below dust is left to the miner rather than making an output
 * nobody can afford to spend. `outputScriptLengths` are the payment outputs (change excluded).
 */
export function selectCoins<C extends { value: bigint }>(
  coins: readonly C[],
  target: bigint,
  rate: SatPerKvb,
  outputScriptLengths: readonly number[],
  changeDust: bigint,
): Selection<C> {
  const sorted = [...coins].sort((a, b) => (a.value === b.value ? 0 : a.value > b.value ? -1 : 1));
  const chosen: C[] = [];
  let total = 0n;
  for (const coin of sorted) {
    chosen.push(coin);
    total += coin.value;
    const withChange = estimateVsize(chosen.length, [...outputScriptLengths, P2WPKH_SCRIPT_BYTES]);
    const changeFee = feeFor(withChange, rate);
    if (total >= target + changeFee + changeDust) {
      return { chosen, fee: changeFee, change: total - target - changeFee, vsize: withChange };
    }
    const alone = estimateVsize(chosen.length, outputScriptLengths);
    const aloneFee = feeFor(alone, rate);
    if (total >= target + aloneFee) return { chosen, fee: total - target, change: 0n, vsize: alone };
  }
  const need = target + feeFor(estimateVsize(Math.max(1, sorted.length), outputScriptLengths), rate);
  throw new InsufficientCoinsError(`the wallet holds ${total} spendable sats; this needs about ${need}`, {
    hint: "fund the wallet (infernet wallet address) or send less",
  });
}
