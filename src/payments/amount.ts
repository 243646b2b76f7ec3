import { InvalidInputError } from "../util/errors.ts";

/**
 * Amounts of money. Every amount in Infernet is a whole number of millisatoshis held in a `bigint`
 * branded `Msat`: no float ever carries money, and the only ways to make one (`msat`, `sats`, and
 * the arithmetic below) refuse a fraction, a negative value or more bitcoin than can exist, so
 * overflow and negative amounts cannot happen silently anywhere past the boundary where an amount
 * enters (a peer message, a flag, a database row).
 */

declare const MSAT: unique symbol;
/** A whole, non-negative number of millisatoshis, at most MAX_MSAT. */
export type Msat = bigint & { readonly [MSAT]: true };

export const MSAT_PER_SAT = 1_000n;
/** 21 million bitcoin: no real amount is larger, and it fits SQLite's signed 64-bit INTEGER. */
export const MAX_MSAT = 21_000_000n * 100_000_000n * MSAT_PER_SAT;

export const ZERO_MSAT = 0n as Msat;

/** A checked amount; `what` names it in the error (a field, a flag). */
export function msat(value: bigint | number | string, what = "amount"): Msat {
  let v: bigint;
  if (typeof value === "bigint") v = value;
  else if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new InvalidInputError(`${what}: ${value} is not a whole number of msat`);
    v = BigInt(value);
  } else {
    if (!/^\d{1,19}$/.test(value))
      throw new InvalidInputError(`${what}: "${value.slice(0, 32)}" is not a whole number of msat`);
    v = BigInt(value);
  }
  if (v < 0n) throw new InvalidInputError(`${what}: ${v} msat is negative`);
  if (v > MAX_MSAT) throw new InvalidInputError(`${what}: ${v} msat is more than 21 million bitcoin`);
  return v as Msat;
}

/** Whole sats as msat. */
export function sats(value: bigint | number, what = "amount"): Msat {
  const s = typeof value === "bigint" ? value : msat(value, what);
  return msat(s * MSAT_PER_SAT, what);
}

export function add(...amounts: Msat[]): Msat {
  return msat(
    amounts.reduce<bigint>((a, b) => a + b, 0n),
    "sum",
  );
}

/** a - b; throws when b is larger (a balance never goes below zero). */
export function sub(a: Msat, b: Msat, what = "difference"): Msat {
  if (b > a) throw new InvalidInputError(`${what}: ${b} msat is more than ${a} msat`);
  return (a - b) as Msat;
}

export function min(a: Msat, b: Msat): Msat {
  return a < b ? a : b;
}

/** `amount * numerator / denominator`, rounded up (a fee) or down (a share). */
export function scale(amount: Msat, numerator: bigint, denominator: bigint, round: "up" | "down"): Msat {
  if (numerator < 0n || denominator <= 0n) throw new InvalidInputError("scale: a negative or zero ratio");
  const product = amount * numerator;
  return msat(round === "up" ? (product + denominator - 1n) / denominator : product / denominator, "scaled amount");
}

/** Whole sats in an amount, rounded down (what an on-chain output can carry). */
export function toSatsFloor(amount: Msat): bigint {
  return amount / MSAT_PER_SAT;
}

const AMOUNT_TEXT = /^(\d{1,16})(?:\.(\d{1,3}))?\s*(sat|msat)?$/;

/**
 * An amount as people type it: "5000sat", "2.5sat", "1500msat", or a bare number in `bare` units.
 * Undefined for anything else (a fraction of a msat, a sign, text); the caller names the flag.
 */
export function parseAmountText(text: string, bare: "sat" | "msat"): Msat | undefined {
  const m = AMOUNT_TEXT.exec(text.trim());
  if (!m) return undefined;
  const unit = m[3] ?? bare;
  if (unit === "msat" && m[2] !== undefined) return undefined;
  const whole = BigInt(m[1] as string);
  const amount = unit === "msat" ? whole : whole * MSAT_PER_SAT + BigInt((m[2] ?? "").padEnd(3, "0"));
  return amount > MAX_MSAT ? undefined : (amount as Msat);
}

/** "1,234.567 sat" for people; exact. */
export function formatMsat(amount: Msat): string {
  const whole = (amount / MSAT_PER_SAT).toLocaleString("en-US");
  const rest = amount % MSAT_PER_SAT;
  return rest === 0n ? `${whole} sat` : `${whole}.${rest.toString().padStart(3, "0").replace(/0+$/, "")} sat`;
}
