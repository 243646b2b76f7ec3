import { parseArgs } from "node:util";
import { formatMsat, type Msat, msat, parseAmountText } from "../payments/amount.ts";
import { UsageError } from "../util/errors.ts";

/** One command-line option, documented where it is declared so `--help` can never drift. */
export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  /** Placeholder shown in help, e.g. "N" or "FILE". */
  value?: string;
  description: string;
}

export type OptionSpecs = Record<string, OptionSpec>;

type ValueOf<S extends OptionSpec> = S["type"] extends "boolean"
  ? S["multiple"] extends true
    ? boolean[]
    : boolean
  : S["multiple"] extends true
    ? string[]
    : string;

export type ParsedValues<O extends OptionSpecs> = { [K in keyof O]?: ValueOf<O[K]> };

export interface Parsed<O extends OptionSpecs> {
  values: ParsedValues<O>;
  positionals: string[];
}

/** Options every command accepts. */
export const COMMON_OPTIONS = {
  help: { type: "boolean", short: "h", description: "Show help for this command" },
} as const satisfies OptionSpecs;

/** Parses argv strictly: an unknown flag or a missing value is a `UsageError` naming the command. */
export function parse<O extends OptionSpecs>(command: string, specs: O, argv: string[]): Parsed<O> {
  const options: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {};
  const all: OptionSpecs = { ...COMMON_OPTIONS, ...specs };
  for (const [name, s] of Object.entries(all)) {
    options[name] = { type: s.type, ...(s.short ? { short: s.short } : {}), ...(s.multiple ? { multiple: true } : {}) };
  }
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: values as ParsedValues<O>, positionals };
  } catch (cause) {
    // node:util's messages run on with advice about "--"; the first sentence is what matters.
    const message = (cause instanceof Error ? cause.message : String(cause)).split(/\.(\s|$)/)[0];
    throw new UsageError(`${command}: ${message}`, { hint: `see \`infernet ${command} --help\``, cause });
  }
}

/** Parses an integer flag within bounds, or throws a `UsageError` that names the flag. */
export function intFlag(
  command: string,
  flag: string,
  raw: string | undefined,
  min: number,
  max: number,
): number | undefined {
  return numericFlag(command, flag, raw, min, max, true);
}

/** Parses a decimal flag within bounds, or throws a `UsageError` that names the flag. */
export function numberFlag(
  command: string,
  flag: string,
  raw: string | undefined,
  min: number,
  max: number,
): number | undefined {
  return numericFlag(command, flag, raw, min, max, false);
}

/** Largest amount any amount flag takes (1 BTC): anything above is a typo. */
export const MAX_AMOUNT_FLAG_MSAT = msat(100_000_000_000);

/**
 * Parses an amount flag ("5000sat", "2.5sat", "1500msat"; a bare number is `bare` units) up to
 * `max`, or throws a `UsageError` that names the flag.
 */
export function amountFlag(
  command: string,
  flag: string,
  raw: string | undefined,
  bare: "sat" | "msat",
  max: Msat,
): Msat | undefined {
  if (raw === undefined) return undefined;
  const amount = parseAmountText(raw, bare);
  if (amount === undefined) {
    throw new UsageError(
      `${command}: --${flag} must be an amount like 5000sat or 1500msat, got "${raw.slice(0, 32)}"`,
      {
        hint: `a bare number is ${bare === "sat" ? "sats" : "millisatoshis"}`,
      },
    );
  }
  if (amount > max) throw new UsageError(`${command}: --${flag} ${raw.slice(0, 32)} is more than ${formatMsat(max)}`);
  return amount;
}

function numericFlag(
  command: string,
  flag: string,
  raw: string | undefined,
  min: number,
  max: number,
  integer: boolean,
) {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  const ok = raw.trim() !== "" && Number.isFinite(n) && (!integer || Number.isInteger(n)) && n >= min && n <= max;
  if (!ok) {
    const kind = integer ? "a whole number" : "a number";
    throw new UsageError(`${command}: --${flag} must be ${kind} from ${min} to ${max}, got "${raw}"`);
  }
  return n;
}

export function formatOptions(specs: OptionSpecs): string {
  const all: OptionSpecs = { ...specs, ...COMMON_OPTIONS };
  const rows = Object.entries(all).map(([name, s]) => {
    const flag = `${s.short ? `-${s.short}, ` : "    "}--${name}${s.type === "string" ? ` <${s.value ?? "value"}>` : ""}`;
    return [flag, s.description + (s.multiple ? " (repeatable)" : "")] as const;
  });
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  return rows.map(([f, d]) => `  ${f.padEnd(width)}${d}`).join("\n");
}
