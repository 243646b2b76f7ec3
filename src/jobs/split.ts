import { readFile, stat } from "node:fs/promises";
import { openImageInput } from "../runtime/onnx/inputs/source.ts";
import { throwIfAborted } from "../util/abort.ts";
import { errorMessage, FileNotFoundError, InvalidInputError } from "../util/errors.ts";
import {
  MAX_PROMPT_LINE_BYTES,
  MAX_PROMPTS_FILE_BYTES,
  MAX_SHARD_BYTES,
  type PromptRecord,
  PromptRecordSchema,
  payloadBytes,
  planShards,
  promptBytes,
  RecordTooLargeError,
  type Shard,
  type ShardPayload,
  type ShardPlan,
  ShardTooLargeError,
  shardRange,
} from "./records.ts";

/**
 * The splitter: cuts a job's input into shards of whole records, in input order, each shard a
 * self-contained payload (records plus their global indices) under a byte limit. Prompts come from
 * a JSONL file; images and tensor rows come through the ONNX input readers (an IDX file raw or
 * gzipped, a `.npy` array, a folder of PNG/JPEG files), read one shard at a time so a large input
 * is never held whole.
 */

export interface SplitOptions {
  /** Records per shard (default `DEFAULT_SHARD_SIZE`). */
  shardSize?: number;
  /** Or a number of shards of near-equal size. */
  shardCount?: number;
  /** Largest shard payload (default `MAX_SHARD_BYTES`). */
  maxShardBytes?: number;
  signal?: AbortSignal;
}

export interface Splitter extends AsyncDisposable {
  readonly path: string;
  /** What the shards carry. */
  readonly kind: ShardPayload["kind"];
  readonly plan: ShardPlan;
  /** The shards in order; each is read when asked for. One pass only. */
  shards(signal?: AbortSignal): AsyncGenerator<Shard>;
  close(): Promise<void>;
}

/** Splits a JSONL prompts file; every line is checked before any shard is made. */
export async function splitPrompts(path: string, options: SplitOptions = {}): Promise<Splitter> {
  const prompts = parsePrompts(await readPromptsFile(path, options.signal), path);
  const plan = planShards(prompts.length, options);
  const limit = options.maxShardBytes ?? MAX_SHARD_BYTES;
  // Every prompt is in memory already, so a record or shard over the limit is refused before any shard is made.
  const sizes = prompts.map((p, i) => {
    const bytes = promptBytes(p);
    if (bytes > limit) {
      throw new RecordTooLargeError(`${path}: prompt ${i} is ${bytes} bytes, more than a shard holds (${limit})`);
    }
    return bytes;
  });
  for (let index = 0; index < plan.shardCount; index++) {
    const { start, count } = shardRange(plan, index);
    tooLarge(
      index,
      count,
      sizes.slice(start, start + count).reduce((a, b) => a + b, 0),
      limit,
    );
  }
  return {
    path,
    kind: "prompts",
    plan,
    async *shards(signal) {
      for (let index = 0; index < plan.shardCount; index++) {
        throwIfAborted(signal ?? options.signal);
        const { start, count } = shardRange(plan, index);
        yield checked(
          { index, start, count, payload: { kind: "prompts", prompts: prompts.slice(start, start + count) } },
          limit,
        );
      }
    },
    close: async () => {},
    async [Symbol.asyncDispose]() {},
  };
}

/** Splits an image input (IDX, `.npy`, a folder or one image) into shards of images or tensor rows. */
export async function splitImages(path: string, options: SplitOptions = {}): Promise<Splitter> {
  const source = await openImageInput(path, options.signal);
  let plan: ShardPlan;
  try {
    plan = planShards(source.records, options);
  } catch (err) {
    await source.close();
    throw err;
  }
  const limit = options.maxShardBytes ?? MAX_SHARD_BYTES;
  return {
    path,
    kind: source.format === "npy" ? "tensor" : "images",
    plan,
    async *shards(signal) {
      const sig = signal ?? options.signal;
      for (let index = 0; index < plan.shardCount; index++) {
        throwIfAborted(sig);
        const { start, count } = shardRange(plan, index);
        const batch = await source.next(count, sig);
        if (!batch || batch.start !== start) {
          throw new InvalidInputError(`${path} ended before record ${start}; it changed while being split`);
        }
        let payload: ShardPayload;
        if (batch.tensor) {
          const rows = batch.tensor.dims[0] ?? 1;
          checkRecord(path, start, batch.tensor.data.byteLength / Math.max(rows, 1), limit);
          payload = { kind: "tensor", tensor: batch.tensor };
        } else {
          const images = batch.images ?? [];
          images.forEach((image, i) => {
            checkRecord(path, start + i, image.data.byteLength, limit);
          });
          payload = { kind: "images", images, ...(batch.names ? { names: batch.names } : {}) };
        }
        yield checked({ index, start, count, payload }, limit);
      }
    },
    close: () => source.close(),
    [Symbol.asyncDispose]: () => source.close(),
  };
}

/**
 * Prompts from JSONL text: one JSON object per line, checked against `PromptRecordSchema`. Blank
 * lines are skipped; a bad line is an `InvalidInputError` naming the file and the 1-based line.
 */
export function parsePrompts(text: string, name: string): PromptRecord[] {
  const prompts: PromptRecord[] = [];
  const encoder = new TextEncoder();
  let line = 0;
  let at = 0;
  while (at < text.length) {
    const end = text.indexOf("\n", at);
    const raw = text.slice(at, end === -1 ? text.length : end);
    at = end === -1 ? text.length : end + 1;
    line++;
    if (raw.trim() === "") continue;
    if (raw.length > MAX_PROMPT_LINE_BYTES || encoder.encode(raw).byteLength > MAX_PROMPT_LINE_BYTES) {
      throw new InvalidInputError(`${name} line ${line} is longer than ${MAX_PROMPT_LINE_BYTES} bytes`);
    }
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (cause) {
      throw new InvalidInputError(`${name} line ${line} is not valid JSON: ${errorMessage(cause)}`, {
        hint: 'each line is one object such as {"prompt": "Once upon a time", "maxTokens": 64}',
        cause,
      });
    }
    const parsed = PromptRecordSchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
      throw new InvalidInputError(`${name} line ${line}: ${where}${issue?.message ?? "not a prompt record"}`, {
        hint: 'each line is one object such as {"prompt": "Once upon a time", "maxTokens": 64}',
      });
    }
    prompts.push(parsed.data);
  }
  if (prompts.length === 0) throw new InvalidInputError(`${name} holds no prompts`);
  return prompts;
}

async function readPromptsFile(path: string, signal?: AbortSignal): Promise<string> {
  throwIfAborted(signal);
  const info = await stat(path).catch((cause: unknown) => {
    throw new FileNotFoundError(`prompts file ${path} does not exist or cannot be read`, { cause });
  });
  if (!info.isFile()) throw new InvalidInputError(`prompts ${path} is not a file`);
  if (info.size > MAX_PROMPTS_FILE_BYTES) {
    throw new InvalidInputError(
      `${path} is ${info.size} bytes; prompts files up to ${MAX_PROMPTS_FILE_BYTES} are read`,
    );
  }
  return readFile(path, "utf8").catch((cause: unknown) => {
    throw new FileNotFoundError(`cannot read ${path}: ${errorMessage(cause)}`, { cause });
  });
}

function checkRecord(path: string, index: number, bytes: number, limit: number): void {
  if (bytes > limit) {
    throw new RecordTooLargeError(`${path}: record ${index} is ${bytes} bytes, more than a shard holds (${limit})`);
  }
}

function checked(shard: Shard, limit: number): Shard {
  tooLarge(shard.index, shard.count, payloadBytes(shard.payload), limit);
  return shard;
}

function tooLarge(index: number, count: number, bytes: number, limit: number): void {
  if (bytes <= limit) return;
  const perShard = Math.max(1, Math.floor((limit * count) / bytes));
  throw new ShardTooLargeError(
    `shard ${index} (${count} records) is ${bytes} bytes, more than the ${limit} a shard may hold`,
    { hint: `use a shard size of at most about ${perShard} records` },
  );
}
