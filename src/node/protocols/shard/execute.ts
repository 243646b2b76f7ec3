import type { Shard, ShardResult } from "../../../jobs/records.ts";
import { catalog, modelFile, type VisionSpec } from "../../../models/catalog.ts";
import type { Engine, LocalModel, RunOptions, Tensor } from "../../../runtime/engine.ts";
import { preprocess } from "../../../runtime/onnx/inputs/preprocess.ts";
import type { Signature } from "../../../runtime/onnx/session.ts";
import { elementCount, sliceBatch } from "../../../runtime/onnx/tensors.ts";
import { throwIfAborted } from "../../../util/abort.ts";
import { InvalidInputError, RuntimeError } from "../../../util/errors.ts";
import { MAX_PARTIAL_OUTPUT_BYTES, type ShardUsage } from "./messages.ts";

/**
 * Runs one shard on this node's engines, handing each finished piece to `emit` in record order:
 * prompts one record at a time (each prompt is a whole generation with its own settings; temperature
 * 0, the default, is greedy), images and tensor rows in batches of `batchRecords` through the ONNX
 * engine. Images are preprocessed with the model's catalog vision spec, as `infernet run` does, so a
 * remote shard gives the same outputs as a local run. `emit` is awaited: a slow reader slows the
 * computation instead of growing a buffer.
 */

/** Records per ONNX call (and per partial result) by default: large enough to amortise, small enough to stream. */
export const DEFAULT_BATCH_RECORDS = 100;

/** A piece of a shard's result: records `[first, first + n)` of the shard. */
export type Emit = (first: number, result: ShardResult) => Promise<void>;

export interface ExecuteOptions {
  engines: Partial<Record<Engine["runtime"], Engine>>;
  batchRecords: number;
  /** This node's peer id, the result's provider. */
  self: string;
  /** Output bytes per tensor piece handed to `emit` (default `MAX_PARTIAL_OUTPUT_BYTES`, so each fits a frame). */
  maxPartialBytes?: number;
  signal: AbortSignal;
}

/** The vision spec of the catalog model whose file has this sha256 (the name a peer sends is not trusted). */
export function visionSpecOf(model: LocalModel): VisionSpec | undefined {
  if (!model.sha256) return undefined;
  return catalog().find((entry) => modelFile(entry).sha256 === model.sha256)?.vision;
}

export async function executeShard(
  model: LocalModel,
  shard: Shard,
  emit: Emit,
  options: ExecuteOptions,
): Promise<ShardUsage> {
  const engine = options.engines[model.runtime];
  if (!engine) throw new InvalidInputError(`this node has no ${model.runtime} engine for ${model.name}`);
  const { payload } = shard;
  if (payload.kind === "prompts") {
    if (model.runtime !== "llama")
      throw new InvalidInputError(`${model.name} is not a language model; send it images or tensors`);
    return await generate(engine, model, shard, payload.prompts, emit, options);
  }
  if (model.runtime !== "onnx") throw new InvalidInputError(`${model.name} is a language model; send it prompts`);
  const spec = visionSpecOf(model);
  let input: string;
  let output: string | undefined;
  let rows: (start: number, end: number) => Tensor;
  if (payload.kind === "images") {
    if (!spec) throw new InvalidInputError(`${model.name} has no catalog vision spec, so it cannot take images`);
    input = spec.input;
    output = spec.output;
    rows = (start, end) => preprocess(payload.images.slice(start, end), spec, spec.inputType);
  } else {
    if (spec) {
      input = spec.input;
      output = spec.output;
    } else {
      const signature = await signatureOf(engine, model, options.signal);
      const [only, ...more] = signature.inputs;
      if (!only || more.length > 0) {
        throw new InvalidInputError(
          `${model.name} has ${signature.inputs.length} inputs; a tensor shard feeds exactly one`,
        );
      }
      input = only.name;
    }
    rows = (start, end) => sliceBatch(payload.tensor, start, end);
  }
  return await classifyRows(engine, model, shard, { input, output, rows }, emit, options);
}

async function generate(
  engine: Engine,
  model: LocalModel,
  shard: Shard,
  prompts: Extract<Shard["payload"], { kind: "prompts" }>["prompts"],
  emit: Emit,
  options: ExecuteOptions,
): Promise<ShardUsage> {
  const usage: ShardUsage = { records: 0, inputTokens: 0, outputTokens: 0, computeMs: 0 };
  const run: RunOptions = { signal: options.signal };
  for (const [i, record] of prompts.entries()) {
    throwIfAborted(options.signal);
    let text = "";
    let finished = false;
    for await (const event of engine.run(model, { kind: "generate", ...record }, run)) {
      if (event.type === "token") text += event.text;
      else if (event.type === "done") {
        finished = true;
        usage.inputTokens += event.usage.inputTokens;
        usage.outputTokens += event.usage.outputTokens;
        usage.computeMs += event.usage.computeMs;
      }
    }
    if (!finished) throw new RuntimeError(`${model.name} ended record ${i} without a done event`);
    usage.records += 1;
    await emit(i, { kind: "text", shard: shard.index, providers: [options.self], outputs: [text] });
  }
  return usage;
}

interface Rows {
  input: string;
  /** The output returned; undefined: the model's only one. */
  output: string | undefined;
  rows: (start: number, end: number) => Tensor;
}

async function classifyRows(
  engine: Engine,
  model: LocalModel,
  shard: Shard,
  plan: Rows,
  emit: Emit,
  options: ExecuteOptions,
): Promise<ShardUsage> {
  const usage: ShardUsage = { records: 0, inputTokens: 0, outputTokens: 0, computeMs: 0 };
  for (let start = 0; start < shard.count; start += options.batchRecords) {
    throwIfAborted(options.signal);
    const end = Math.min(shard.count, start + options.batchRecords);
    let outputs: Record<string, Tensor> | undefined;
    const request = { kind: "tensor" as const, inputs: { [plan.input]: plan.rows(start, end) } };
    for await (const event of engine.run(model, plan.output ? { ...request, outputs: [plan.output] } : request, {
      signal: options.signal,
    })) {
      if (event.type === "tensors") outputs = event.outputs;
      else if (event.type === "done") {
        usage.inputTokens += event.usage.inputTokens;
        usage.outputTokens += event.usage.outputTokens;
        usage.computeMs += event.usage.computeMs;
      }
    }
    const names = Object.keys(outputs ?? {});
    const name = plan.output ?? (names.length === 1 ? names[0] : undefined);
    const tensor = name === undefined ? undefined : outputs?.[name];
    if (!tensor) {
      throw new InvalidInputError(`${model.name} gave ${names.length} outputs; a shard result holds exactly one`);
    }
    if (tensor.dims[0] !== end - start) {
      throw new RuntimeError(`${model.name} gave ${tensor.dims[0]} output rows for ${end - start} records`);
    }
    usage.records += end - start;
    await emitRows(tensor, start, shard, emit, options);
  }
  return usage;
}

/** Sends `tensor`'s rows in pieces that each fit a frame. */
async function emitRows(
  tensor: Tensor,
  first: number,
  shard: Shard,
  emit: Emit,
  options: ExecuteOptions,
): Promise<void> {
  const { self, maxPartialBytes = MAX_PARTIAL_OUTPUT_BYTES } = options;
  const rowBytes = elementCount(tensor.dims.slice(1)) * tensor.data.BYTES_PER_ELEMENT;
  const step = Math.max(1, Math.floor(maxPartialBytes / Math.max(1, rowBytes)));
  const rows = tensor.dims[0] ?? 0;
  for (let at = 0; at < rows; at += step) {
    const output = sliceBatch(tensor, at, Math.min(rows, at + step));
    await emit(first + at, { kind: "tensor", shard: shard.index, providers: [self], output });
  }
}

async function signatureOf(engine: Engine, model: LocalModel, signal: AbortSignal): Promise<Signature> {
  const withSignature = engine as Engine & { signature?: (m: LocalModel, o?: RunOptions) => Promise<Signature> };
  if (typeof withSignature.signature !== "function") {
    throw new InvalidInputError(`cannot tell which input of ${model.name} a tensor shard feeds`);
  }
  return await withSignature.signature(model, { signal });
}
