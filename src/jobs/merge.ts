import { createHash } from "node:crypto";
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import type { VisionSpec } from "../models/catalog.ts";
import type { Tensor } from "../runtime/engine.ts";
import { classify } from "../runtime/onnx/classify.ts";
import { throwIfAborted } from "../util/abort.ts";
import { errorMessage, FileNotFoundError } from "../util/errors.ts";
import { npyHeader } from "./npy-writer.ts";
import {
  ConflictingResultError,
  MAX_PROVIDER_ID_CHARS,
  MAX_PROVIDERS_PER_SHARD,
  MissingShardsError,
  ResultShapeError,
  type ShardPlan,
  type ShardResult,
  shardRange,
} from "./records.ts";

/**
 * The merger: takes shard results in any order, at most once each, and writes them in input order
 * to one JSONL file (and optionally the raw output rows as a `.npy`). A shard is written as soon as
 * every shard before it is; later ones wait in memory, so only results that arrive ahead of a gap are
 * held. Each shard keeps a sha256 of its result, so a duplicate is recognised after it is written:
 * equal counts once (its providers join the provenance), different is a `ConflictingResultError`.
 * The output is written to `<path>.partial` and renamed when the last shard is in.
 */

/** Class rankings written per record when `topK` is not given. */
export const DEFAULT_TOP_K = 1;

/** Most classes ranked per record. */
export const MAX_TOP_K = 100;

const PARTIAL_SUFFIX = ".partial";

export interface MergerOptions {
  plan: ShardPlan;
  /** `text`: one line per record `{index, output, providers}`; `classification`: `{index, class, label, score, [top], providers}`. */
  kind: "text" | "classification";
  /** The JSONL file written. */
  outputPath: string;
  /** Classification only: also write every record's raw output row here as a `.npy` (`[records, ...recordShape]`). */
  tensorPath?: string;
  /** Classification only: how scores are read from the output (default `logits`). */
  outputKind?: VisionSpec["outputKind"];
  classNames?: readonly string[];
  /** Classification only: ranked classes per record; above 1, a `top` list is written (default `DEFAULT_TOP_K`). */
  topK?: number;
  /** Classification only: the shape of one record's output (e.g. `[10]`); default: that of the first result. */
  recordShape?: readonly number[];
  signal?: AbortSignal;
}

export type AddOutcome = "merged" | "pending" | "duplicate";

export interface MergeSummary {
  records: number;
  shards: number;
  outputPath: string;
  tensorPath?: string;
  /** Per shard, the providers that computed it. */
  provenance: string[][];
}

export interface Merger extends AsyncDisposable {
  /** Records written so far (always a prefix of the input). */
  readonly written: number;
  /** Results held in memory because a shard before them is still missing. */
  readonly pending: number;
  /** Takes one shard result; `merged` when it (and perhaps others after it) reached the file. */
  add(result: ShardResult, signal?: AbortSignal): Promise<AddOutcome>;
  /** Shards with no result yet, in order. */
  missing(): number[];
  /** Completes the output; a `MissingShardsError` (the merger stays usable) if any shard has no result. */
  finish(): Promise<MergeSummary>;
  /** Closes the files; an unfinished output is removed. */
  close(): Promise<void>;
}

export async function createMerger(options: MergerOptions): Promise<Merger> {
  const topK = options.topK ?? DEFAULT_TOP_K;
  if (!Number.isInteger(topK) || topK < 1 || topK > MAX_TOP_K) {
    throw new ResultShapeError(`topK must be 1 to ${MAX_TOP_K}, not ${topK}`);
  }
  const out = await create(options.outputPath + PARTIAL_SUFFIX);
  let tensorOut: FileHandle | undefined;
  try {
    if (options.tensorPath) tensorOut = await create(options.tensorPath + PARTIAL_SUFFIX);
  } catch (err) {
    await out.close();
    throw err;
  }
  return new ShardMerger(options, topK, out, tensorOut);
}

class ShardMerger implements Merger {
  written = 0;
  private next = 0;
  private readonly waiting = new Map<number, ShardResult>();
  private readonly digests: (string | undefined)[];
  private readonly provenance: string[][];
  private recordShape: number[] | undefined;
  private tensorType: Tensor["type"] | undefined;
  private closed = false;

  constructor(
    private readonly options: MergerOptions,
    private readonly topK: number,
    private readonly out: FileHandle,
    private readonly tensorOut: FileHandle | undefined,
  ) {
    this.digests = new Array(options.plan.shardCount);
    this.provenance = Array.from({ length: options.plan.shardCount }, () => []);
    this.recordShape = options.recordShape ? [...options.recordShape] : undefined;
  }

  async add(result: ShardResult, signal?: AbortSignal): Promise<AddOutcome> {
    throwIfAborted(signal ?? this.options.signal);
    if (this.closed) throw new ResultShapeError("the merger is closed");
    this.check(result);
    const digest = digestOf(result);
    const known = this.digests[result.shard];
    if (known !== undefined) {
      if (known !== digest) {
        throw new ConflictingResultError(
          `shard ${result.shard} came back twice with different results (from ${result.providers.join(", ")} and ${this.provenance[result.shard]?.join(", ")})`,
        );
      }
      this.addProviders(result.shard, result.providers);
      return "duplicate";
    }
    this.digests[result.shard] = digest;
    this.addProviders(result.shard, result.providers);
    if (result.shard !== this.next) {
      this.waiting.set(result.shard, result);
      return "pending";
    }
    await this.write(result);
    for (let ready = this.waiting.get(this.next); ready; ready = this.waiting.get(this.next)) {
      this.waiting.delete(ready.shard);
      await this.write(ready);
    }
    return "merged";
  }

  get pending(): number {
    return this.waiting.size;
  }

  missing(): number[] {
    const missing: number[] = [];
    for (let i = this.next; i < this.options.plan.shardCount; i++) if (this.digests[i] === undefined) missing.push(i);
    return missing;
  }

  async finish(): Promise<MergeSummary> {
    const missing = this.missing();
    if (missing.length > 0) throw new MissingShardsError(missing);
    const { outputPath, tensorPath, plan } = this.options;
    await this.closeFiles();
    await rename(outputPath + PARTIAL_SUFFIX, outputPath);
    if (tensorPath) await rename(tensorPath + PARTIAL_SUFFIX, tensorPath);
    return {
      records: plan.records,
      shards: plan.shardCount,
      outputPath,
      ...(tensorPath ? { tensorPath } : {}),
      provenance: this.provenance,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.closeFiles();
    await rm(this.options.outputPath + PARTIAL_SUFFIX, { force: true });
    if (this.options.tensorPath) await rm(this.options.tensorPath + PARTIAL_SUFFIX, { force: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private async closeFiles(): Promise<void> {
    this.closed = true;
    await this.out.close();
    await this.tensorOut?.close();
  }

  private addProviders(shard: number, providers: readonly string[]): void {
    const list = this.provenance[shard] as string[];
    for (const p of providers) if (!list.includes(p) && list.length < MAX_PROVIDERS_PER_SHARD) list.push(p);
  }

  /** Throws `ResultShapeError` unless `result` fits its shard; results are untrusted peer data. */
  private check(result: ShardResult): void {
    const { plan, kind } = this.options;
    const shard = result.shard;
    if (!Number.isSafeInteger(shard) || shard < 0 || shard >= plan.shardCount) {
      throw new ResultShapeError(`a result for shard ${shard}; the job has shards 0 to ${plan.shardCount - 1}`);
    }
    const providers = result.providers;
    if (
      !Array.isArray(providers) ||
      providers.length === 0 ||
      providers.length > MAX_PROVIDERS_PER_SHARD ||
      providers.some((p) => typeof p !== "string" || p.length === 0 || p.length > MAX_PROVIDER_ID_CHARS)
    ) {
      throw new ResultShapeError(`shard ${shard}: a result names 1 to ${MAX_PROVIDERS_PER_SHARD} provider ids`);
    }
    const { count } = shardRange(plan, shard);
    if (kind === "text") {
      if (result.kind !== "text") throw new ResultShapeError(`shard ${shard}: a ${result.kind} result for a text job`);
      if (!Array.isArray(result.outputs) || result.outputs.length !== count) {
        throw new ResultShapeError(`shard ${shard}: ${result.outputs?.length} outputs for ${count} records`);
      }
      if (result.outputs.some((o) => typeof o !== "string")) {
        throw new ResultShapeError(`shard ${shard}: every output is text`);
      }
      return;
    }
    if (result.kind !== "tensor")
      throw new ResultShapeError(`shard ${shard}: a ${result.kind} result for a tensor job`);
    const { type, dims, data } = result.output;
    if (type !== "float32" && type !== "float16") {
      throw new ResultShapeError(`shard ${shard}: a ${type} output cannot be classified (float32 or float16)`);
    }
    if (this.tensorType !== undefined && type !== this.tensorType) {
      throw new ResultShapeError(`shard ${shard}: a ${type} output where earlier shards gave ${this.tensorType}`);
    }
    const shape = dims.slice(1);
    if (dims[0] !== count || shape.length === 0) {
      throw new ResultShapeError(`shard ${shard}: output of shape [${dims.join(", ")}] for ${count} records`);
    }
    const want = this.recordShape;
    if (want && (want.length !== shape.length || want.some((d, i) => d !== shape[i]))) {
      throw new ResultShapeError(
        `shard ${shard}: records of shape [${shape.join(", ")}], expected [${want.join(", ")}]`,
      );
    }
    const elements = dims.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(elements) || data.length !== elements) {
      throw new ResultShapeError(`shard ${shard}: ${data.length} values for shape [${dims.join(", ")}]`);
    }
    this.recordShape ??= shape;
    this.tensorType ??= type;
  }

  private async write(result: ShardResult): Promise<void> {
    const start = shardRange(this.options.plan, result.shard).start;
    const providers = this.provenance[result.shard] as string[];
    let lines = "";
    if (result.kind === "text") {
      result.outputs.forEach((output, i) => {
        lines += `${JSON.stringify({ index: start + i, output, providers })}\n`;
      });
    } else {
      const { outputKind = "logits", classNames } = this.options;
      classify(result.output, outputKind, classNames, this.topK).forEach((p, i) => {
        const line = { index: start + i, class: p.class, label: p.label, score: p.score };
        const top = this.topK > 1 ? { top: p.top } : {};
        lines += `${JSON.stringify({ ...line, ...top, providers })}\n`;
      });
      await this.writeTensor(result.output);
    }
    await writeAll(this.out, lines, this.options.outputPath);
    this.written += shardRange(this.options.plan, result.shard).count;
    this.next++;
  }

  private async writeTensor(output: Tensor): Promise<void> {
    if (!this.tensorOut) return;
    const path = this.options.tensorPath as string;
    if (this.next === 0) {
      const shape = [this.options.plan.records, ...(this.recordShape ?? [])];
      await writeAll(this.tensorOut, npyHeader(output.type, shape), path);
    }
    const { buffer, byteOffset, byteLength } = output.data;
    await writeAll(this.tensorOut, new Uint8Array(buffer, byteOffset, byteLength), path);
  }
}

function digestOf(result: ShardResult): string {
  const hash = createHash("sha256");
  if (result.kind === "text") {
    hash.update(JSON.stringify(result.outputs));
  } else {
    const { type, dims, data } = result.output;
    hash.update(`${type}[${dims.join(",")}]`);
    hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return hash.digest("hex");
}

async function create(path: string): Promise<FileHandle> {
  try {
    return await open(path, "w");
  } catch (cause) {
    throw new FileNotFoundError(`cannot write ${path}: ${errorMessage(cause)}`, { cause });
  }
}

async function writeAll(handle: FileHandle, data: string | Uint8Array, path: string): Promise<void> {
  try {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done);
      done += bytesWritten;
    }
  } catch (cause) {
    throw new FileNotFoundError(`cannot write ${path}: ${errorMessage(cause)}`, { cause });
  }
}
