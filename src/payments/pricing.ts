import { InvalidInputError, UsageError } from "../util/errors.ts";
import { type Msat, msat } from "./amount.ts";

/**
 * What a provider charges for a model: whole millisatoshis per 1,000 units of each kind of work the
 * runtime measures (generated tokens, prompt tokens, ONNX inferences, compute-seconds). A kind left
 * out costs nothing. A copy or a request costs the sum over its usage, rounded down to the msat
 * once at the end (`usagePrice`), so no rounding is paid per unit. Announced per model in the
 * provider's capability record; set with `infernet start --price`.
 */

export const PRICE_UNITS = ["tokensOut", "tokensIn", "inferences", "computeSeconds"] as const;
export type PriceUnit = (typeof PRICE_UNITS)[number];
export type ModelPrice = Partial<Record<PriceUnit, number>>;

/** 1 BTC per 1,000 units: anything above is a typo or an attack on the price filter. */
export const MAX_PRICE_MSAT_PER_1K = 100_000_000_000;

/** The unit a runtime's work is counted in first: what prices are compared by and quotes made of. */
export function mainUnit(runtime: "llama" | "onnx"): PriceUnit {
  return runtime === "llama" ? "tokensOut" : "inferences";
}

/** The price of `sats` per 1,000 of a runtime's main unit (what a plain `--price 20` means). */
export function flatPrice(runtime: "llama" | "onnx", satsPer1k: number): ModelPrice {
  return { [mainUnit(runtime)]: satsToMsat(satsPer1k, "price") };
}

/** What a piece of work used. */
export interface Usage {
  tokensOut?: number;
  tokensIn?: number;
  inferences?: number;
  computeMs?: number;
}

/** The price of `usage` at `price`: exact, rounded down once. */
export function usagePrice(price: ModelPrice, usage: Usage): Msat {
  const units = (n: number | undefined, what: string): bigint => {
    if (n === undefined) return 0n;
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidInputError(`${what}: ${n} is not a count`);
    return BigInt(n);
  };
  const rate = (u: PriceUnit) => BigInt(price[u] ?? 0);
  // Everything over 1,000,000: prices are per 1,000 units, and compute is counted in milliseconds.
  const micro =
    (rate("tokensOut") * units(usage.tokensOut, "tokensOut") +
      rate("tokensIn") * units(usage.tokensIn, "tokensIn") +
      rate("inferences") * units(usage.inferences, "inferences")) *
      1_000n +
    rate("computeSeconds") * units(usage.computeMs === undefined ? undefined : Math.ceil(usage.computeMs), "computeMs");
  return msat(micro / 1_000_000n, "price of the work");
}

/** A price's main-unit rate in sats per 1,000 units (for people, filters and the API's metering). */
export function satsPer1k(price: ModelPrice, runtime: "llama" | "onnx"): number {
  return (price[mainUnit(runtime)] ?? 0) / 1_000;
}

/**
 * The estimated msat per main unit of work, for quotes and the planner: the main rate, plus the
 * compute-second rate over the provider's announced units per second (when it has both).
 */
export function unitEstimateMsat(price: ModelPrice, runtime: "llama" | "onnx", unitsPerSecond?: number): number {
  const main = (price[mainUnit(runtime)] ?? 0) / 1_000;
  const compute = price.computeSeconds && unitsPerSecond ? price.computeSeconds / 1_000 / unitsPerSecond : 0;
  return main + compute;
}

/** "2 sat/1k tokens, 0.5 sat/1k prompt tokens" for people. */
export function formatPrice(price: ModelPrice): string {
  const names: Record<PriceUnit, string> = {
    tokensOut: "1k tokens",
    tokensIn: "1k prompt tokens",
    inferences: "1k inferences",
    computeSeconds: "1k compute-s",
  };
  const parts = PRICE_UNITS.filter((u) => price[u]).map((u) => `${(price[u] ?? 0) / 1_000} sat/${names[u]}`);
  return parts.length ? parts.join(", ") : "free";
}

const FLAG_UNITS: Record<string, { unit: PriceUnit; per1k: number }> = {
  "1ktok": { unit: "tokensOut", per1k: 1 },
  "1ktok-in": { unit: "tokensIn", per1k: 1 },
  "1kinf": { unit: "inferences", per1k: 1 },
  s: { unit: "computeSeconds", per1k: 1_000 },
};
const AMOUNT = /^(\d+(?:\.\d{1,3})?)(sat|msat)$/;

/**
 * One `--price` flag: a plain number (sats per 1,000 main units, every model), or
 * `MODEL=AMOUNT/UNIT` with AMOUNT like `2sat`, `0.5sat` or `1500msat` and UNIT one of 1ktok
 * (generated tokens), 1ktok-in (prompt tokens), 1kinf (inferences) or s (compute-second).
 */
export function parsePriceFlag(text: string): { model?: string; sats?: number; unit?: PriceUnit; msatPer1k?: number } {
  const bad = (why: string) =>
    new UsageError(`--price "${text.slice(0, 64)}": ${why}`, {
      hint: "e.g. --price 20 (sats per 1,000 tokens or inferences), --price stories260k=2sat/1ktok, --price mnist-8=1sat/1kinf",
    });
  const trimmed = text.trim();
  if (/^\d+(\.\d{1,3})?$/.test(trimmed)) return { sats: Number(trimmed) };
  const eq = trimmed.indexOf("=");
  if (eq <= 0) throw bad("not a number of sats nor MODEL=AMOUNT/UNIT");
  const model = trimmed.slice(0, eq);
  const [amountText, unitText, ...rest] = trimmed.slice(eq + 1).split("/");
  const amount = AMOUNT.exec(amountText ?? "");
  const unit = FLAG_UNITS[unitText ?? ""];
  if (!amount || rest.length) throw bad("the amount is a number with sat or msat, like 2sat or 1500msat");
  if (!unit) throw bad(`the unit is one of ${Object.keys(FLAG_UNITS).join(", ")}`);
  const msatAmount = amount[2] === "sat" ? Math.round(Number(amount[1]) * 1_000) : Number(amount[1]);
  if (!Number.isInteger(msatAmount)) throw bad("msat are whole");
  const msatPer1k = msatAmount * unit.per1k;
  if (msatPer1k > MAX_PRICE_MSAT_PER_1K) throw bad("more than 1 BTC per 1,000 units");
  return { model, unit: unit.unit, msatPer1k };
}

function satsToMsat(sats: number, what: string): number {
  const m = Math.round(sats * 1_000);
  if (!Number.isSafeInteger(m) || m < 0 || m > MAX_PRICE_MSAT_PER_1K) {
    throw new InvalidInputError(`${what}: ${sats} sat per 1,000 units is not a price`);
  }
  return m;
}

/** What the `--price` flags of `infernet start` say: a price for every model, and per-model prices. */
export interface PriceFlags {
  /** Sats per 1,000 main units, for models without a price of their own. */
  sats?: number;
  perModel: Map<string, ModelPrice>;
}

/** Reads every `--price` flag (see `parsePriceFlag`); a model's flags add up to its price. */
export function priceFlags(texts: readonly string[]): PriceFlags {
  const out: PriceFlags = { perModel: new Map() };
  for (const text of texts) {
    const flag = parsePriceFlag(text);
    if (flag.sats !== undefined) {
      satsToMsat(flag.sats, "--price");
      out.sats = flag.sats;
    } else if (flag.model && flag.unit && flag.msatPer1k !== undefined) {
      out.perModel.set(flag.model, { ...out.perModel.get(flag.model), [flag.unit]: flag.msatPer1k });
    }
  }
  return out;
}

/** A served model's price: its own flags, else the flat price for its runtime's main unit. */
export function modelPrice(
  flags: PriceFlags | undefined,
  name: string,
  runtime: "llama" | "onnx",
  defaultSats: number,
): ModelPrice {
  return flags?.perModel.get(name) ?? flatPrice(runtime, flags?.sats ?? defaultSats);
}
