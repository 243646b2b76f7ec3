import { InvalidInputError, UsageError } from "../util/errors.ts";

/**
 * An aggregator's fee: a percentage of what the providers of a job are paid, announced in its
 * capability record and chosen with `infernet start --aggregator --fee 1%`. Fees are whole basis
 * points (hundredths of a percent), so `feeMsat` is exact integer arithmetic and a record's fee has
 * one meaning on every node, whatever its floating point does with 1.15 * 100.
 */

/** Lowest fee an aggregator may charge: below it, running one does not pay for its bandwidth and disk. */
export const MIN_FEE_PERCENT = 0.5;
/** Highest fee: clients pick aggregators by fee, and anything above this is a typo or gouging. */
export const MAX_FEE_PERCENT = 2;
export const DEFAULT_FEE_PERCENT = 1;
/** Fees are given to this many decimals of a percent (whole basis points). */
export const FEE_PERCENT_DECIMALS = 2;

const BASIS_POINTS_PER_PERCENT = 10 ** FEE_PERCENT_DECIMALS;
/** A number, optionally with a fraction of up to FEE_PERCENT_DECIMALS digits, then at most one `%`. */
const FEE_TEXT = new RegExp(`^(\\d{1,3}(?:\\.\\d{1,${FEE_PERCENT_DECIMALS}})?)\\s*%?$`);
/** How far `percent * 100` may be from a whole number and still count as whole basis points (float noise). */
const BASIS_POINT_TOLERANCE = 1e-9;

/** The fee in whole basis points, or undefined when it is not a whole number of them. */
function basisPoints(feePercent: number): number | undefined {
  const scaled = feePercent * BASIS_POINTS_PER_PERCENT;
  const whole = Math.round(scaled);
  return Number.isFinite(scaled) && Math.abs(scaled - whole) < BASIS_POINT_TOLERANCE ? whole : undefined;
}

/** Whether `feePercent` may stand in a capability record: in range and whole basis points. */
export function isValidFee(feePercent: number): boolean {
  return (
    Number.isFinite(feePercent) &&
    feePercent >= MIN_FEE_PERCENT &&
    feePercent <= MAX_FEE_PERCENT &&
    basisPoints(feePercent) !== undefined
  );
}

/**
 * Reads a fee as a user writes it: "1%", "1", "0.5%", "1.5 %" -> the percentage (1, 1, 0.5, 1.5).
 * Throws UsageError, naming the allowed range, for anything else: negative, not a number, "1%%",
 * more than FEE_PERCENT_DECIMALS decimals, or outside [MIN_FEE_PERCENT, MAX_FEE_PERCENT].
 */
export function parseFee(text: string): number {
  const range = `between ${MIN_FEE_PERCENT}% and ${MAX_FEE_PERCENT}%`;
  const match = FEE_TEXT.exec(text.trim());
  const percent = match?.[1] === undefined ? Number.NaN : Number(match[1]);
  if (!isValidFee(percent)) {
    throw new UsageError(`the fee "${text.slice(0, 32)}" is not a percentage ${range}`, {
      hint: `give a fee ${range}, with at most ${FEE_PERCENT_DECIMALS} decimals, e.g. --fee ${DEFAULT_FEE_PERCENT}%`,
    });
  }
  return percent;
}

/**
 * The aggregator's fee on `providerMsat` paid to providers, rounded up to a whole millisatoshi (so a
 * non-zero payment never carries a zero fee). Exact for any safe-integer amount. Throws
 * InvalidInputError for a negative or fractional amount, or a fee that is not whole basis points in
 * [0, MAX_FEE_PERCENT].
 */
export function feeMsat(providerMsat: number, feePercent: number): number {
  if (!Number.isSafeInteger(providerMsat) || providerMsat < 0) {
    throw new InvalidInputError(`${providerMsat} is not a whole, non-negative number of millisatoshis`);
  }
  const bps = basisPoints(feePercent);
  if (bps === undefined || bps < 0 || feePercent > MAX_FEE_PERCENT) {
    throw new InvalidInputError(`${feePercent}% is not a fee between 0% and ${MAX_FEE_PERCENT}% in whole basis points`);
  }
  // BigInt: a large payment times the basis points can pass 2^53.
  const denominator = BigInt(100 * BASIS_POINTS_PER_PERCENT);
  const numerator = BigInt(providerMsat) * BigInt(bps);
  return Number((numerator + denominator - 1n) / denominator);
}
