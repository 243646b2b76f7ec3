import { stat } from "node:fs/promises";
import { basename, dirname, extname, resolve } from "node:path";
import { z } from "zod";
import { MAX_PROMPT_TOKENS, MAX_SHARDS } from "../jobs/records.ts";
import { DEFAULT_REDUNDANCY, MAX_IDEMPOTENCY_KEY_LENGTH, MAX_REDUNDANCY, MAX_SPEC_BYTES } from "../jobs/spec.ts";
import { type CatalogEntry, requireModel } from "../models/catalog.ts";
import { errorMessage, FileNotFoundError, InvalidInputError, UsageError } from "../util/errors.ts";

/**
 * The user-facing job file of `infernet submit job.json`, and the flags that say the same thing.
 * Paths in the file are relative to the file; flags override the file. The result is a
 * `SubmitSettings` with absolute paths, a catalog model and every default filled in.
 */

/** Most the whole job may cost unless --max-price says otherwise: 10,000 sats, in millisatoshi. */
export const DEFAULT_MAX_PRICE_MSAT = 10_000_000;
/** Highest --max-price accepted (1 BTC in millisatoshi): anything above is a typo. */
export const MAX_PRICE_MSAT = 100_000_000_000;
/** How long a job may take unless --deadline says otherwise. */
export const DEFAULT_DEADLINE_MS = 60 * 60 * 1000;
/** Longest deadline accepted. */
export const MAX_DEADLINE_MS = 7 * 24 * 60 * 60 * 1000;
/** Shortest deadline accepted (anything less cannot even be scheduled). */
export const MIN_DEADLINE_MS = 1_000;

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** "90s", "30m", "1h30m", "2d" in milliseconds; undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(trimmed)) return undefined;
  let total = 0;
  for (const [, amount, , unit] of trimmed.matchAll(/(\d+(\.\d+)?)(ms|s|m|h|d)/g)) {
    total += Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS];
  }
  return Math.round(total);
}

const Duration = z.string().refine((d) => parseDuration(d) !== undefined, 'a duration such as "30m", "90s" or "1h30m"');

export const JobFileSchema = z
  .strictObject({
    model: z.string().min(1).max(256),
    inputs: z.string().min(1).max(4096).optional(),
    prompts: z.string().min(1).max(4096).optional(),
    shardSize: z.int().min(1).optional(),
    shards: z.int().min(1).max(MAX_SHARDS).optional(),
    redundancy: z.int().min(1).max(MAX_REDUNDANCY).optional(),
    minVerification: z.int().min(1).max(MAX_REDUNDANCY).optional(),
    maxTokens: z.int().min(1).max(MAX_PROMPT_TOKENS).optional(),
    maxPriceMsat: z.int().min(0).max(MAX_PRICE_MSAT).optional(),
    deadline: Duration.optional(),
    aggregator: z.string().min(1).max(1024).optional(),
    output: z.string().min(1).max(4096).optional(),
    key: z.string().min(1).max(MAX_IDEMPOTENCY_KEY_LENGTH).optional(),
  })
  .refine((f) => (f.inputs === undefined) !== (f.prompts === undefined), {
    message: 'give "inputs" (images, IDX, .npy) or "prompts" (JSONL), exactly one',
  })
  .refine((f) => f.shardSize === undefined || f.shards === undefined, {
    message: 'give "shardSize" or "shards", not both',
  });
export type JobFile = z.infer<typeof JobFileSchema>;

/** What the flags say; every field optional, the same names as the job file. */
export type JobRequest = Partial<JobFile>;

export interface SubmitSettings {
  model: CatalogEntry;
  /** Absolute path of the input and what it is: prompts JSONL, or images/IDX/.npy for ONNX. */
  input: { kind: "prompts" | "images"; path: string };
  shardSize?: number;
  shardCount?: number;
  redundancy?: number;
  /** Fewest copies any shard gets however trusted its provider (adaptive replication's floor). */
  minVerification?: number;
  maxTokens?: number;
  maxPriceMsat: number;
  /** Relative: the job's deadline is this long after submission. */
  deadlineMs: number;
  /** A peer id or a multiaddr ending in /p2p/<peer id>. */
  aggregator?: string;
  /** Absolute path of the merged output. */
  output: string;
  /** Idempotency key chosen by the user (otherwise derived from the content, see job-key.ts). */
  key?: string;
}

/** Reads and validates a job file; paths in it become absolute, relative to the file's folder. */
export async function readJobFile(path: string): Promise<JobRequest> {
  const info = await stat(path).catch((cause: unknown) => {
    throw new FileNotFoundError(`job file ${path} does not exist or cannot be read`, { cause });
  });
  if (!info.isFile()) throw new InvalidInputError(`job file ${path} is not a file`);
  if (info.size > MAX_SPEC_BYTES) throw new InvalidInputError(`job file ${path} is over ${MAX_SPEC_BYTES} bytes`);
  return parseJobFile(await Bun.file(path).text(), path);
}

/** Parses job file text; `path` names the file in errors and anchors its relative paths. */
export function parseJobFile(text: string, path: string): JobRequest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new InvalidInputError(`job file ${path} is not valid JSON: ${errorMessage(cause)}`, { cause });
  }
  const parsed = JobFileSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `"${issue.path.join(".")}": ` : "";
    throw new InvalidInputError(`job file ${path}: ${where}${issue?.message ?? "malformed"}`, {
      hint: "see `infernet submit --help` for the job file format",
    });
  }
  const base = dirname(resolve(path));
  const file = parsed.data;
  const at = (p: string | undefined) => (p === undefined ? undefined : resolve(base, p));
  return withoutUndefined({ ...file, inputs: at(file.inputs), prompts: at(file.prompts), output: at(file.output) });
}

/**
 * The file's request with the flags on top, checked and completed: the model must be in the catalog
 * and fit its input (a language model takes prompts, an ONNX model images), the input must exist.
 */
export async function resolveSettings(file: JobRequest, flags: JobRequest, cwd: string): Promise<SubmitSettings> {
  const merged: JobRequest = { ...file, ...withoutUndefined(flags) };
  // A flag for one kind of input replaces the file's other kind.
  if (flags.inputs !== undefined) delete merged.prompts;
  if (flags.prompts !== undefined) delete merged.inputs;
  if (flags.shardSize !== undefined) delete merged.shards;
  if (flags.shards !== undefined) delete merged.shardSize;
  if (!merged.model) throw new UsageError("submit: which model?", { hint: "give --model, e.g. --model mnist-8" });
  const model = requireModel(merged.model);
  if (merged.inputs !== undefined && merged.prompts !== undefined) {
    throw new UsageError("submit: give --inputs or --prompts, not both");
  }
  const raw = merged.prompts ?? merged.inputs;
  if (raw === undefined) {
    throw new UsageError("submit: what input?", {
      hint: "give --inputs FILE_OR_DIR (images, IDX, .npy) or --prompts FILE.jsonl",
    });
  }
  const kind = merged.prompts !== undefined ? "prompts" : "images";
  if (model.runtime === "llama" && kind !== "prompts") {
    throw new UsageError(`submit: ${model.name} is a language model; give --prompts FILE.jsonl, not --inputs`);
  }
  if (model.runtime === "onnx" && kind !== "images") {
    throw new UsageError(`submit: ${model.name} is an ONNX model; give --inputs (images, IDX, .npy), not --prompts`);
  }
  if (merged.maxTokens !== undefined && kind !== "prompts") {
    throw new UsageError("submit: --max-tokens is for language models (--prompts)");
  }
  const path = resolve(cwd, raw);
  await stat(path).catch((cause: unknown) => {
    throw new FileNotFoundError(`input ${path} does not exist or cannot be read`, { cause });
  });
  const copies = merged.redundancy ?? DEFAULT_REDUNDANCY;
  if (merged.minVerification !== undefined && merged.minVerification > copies) {
    throw new UsageError(`submit: --min-verification ${merged.minVerification} exceeds the redundancy (${copies})`, {
      hint: "the floor of copies per shard is at most its redundancy",
    });
  }
  const deadlineMs = merged.deadline === undefined ? DEFAULT_DEADLINE_MS : parseDuration(merged.deadline);
  if (deadlineMs === undefined || deadlineMs < MIN_DEADLINE_MS || deadlineMs > MAX_DEADLINE_MS) {
    throw new UsageError(`submit: --deadline must be a duration from 1s to 7d, got "${merged.deadline}"`, {
      hint: "e.g. --deadline 30m or --deadline 1h30m",
    });
  }
  return {
    model,
    input: { kind, path },
    ...(merged.shardSize !== undefined ? { shardSize: merged.shardSize } : {}),
    ...(merged.shards !== undefined ? { shardCount: merged.shards } : {}),
    ...(merged.redundancy !== undefined ? { redundancy: merged.redundancy } : {}),
    ...(merged.minVerification !== undefined ? { minVerification: merged.minVerification } : {}),
    ...(merged.maxTokens !== undefined ? { maxTokens: merged.maxTokens } : {}),
    maxPriceMsat: merged.maxPriceMsat ?? DEFAULT_MAX_PRICE_MSAT,
    deadlineMs,
    ...(merged.aggregator !== undefined ? { aggregator: merged.aggregator } : {}),
    output: resolve(cwd, merged.output ?? defaultOutput(path)),
    ...(merged.key !== undefined ? { key: merged.key } : {}),
  };
}

/** `<input basename without its extension>.results.jsonl` in the working folder. */
export function defaultOutput(input: string): string {
  const name = basename(input);
  const ext = extname(name);
  return `${ext && ext !== name ? name.slice(0, -ext.length) : name}.results.jsonl`;
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
