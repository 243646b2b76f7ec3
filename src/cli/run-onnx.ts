import type { VisionSpec } from "../models/catalog.ts";
import type { ResolvedModel } from "../models/local.ts";
import type { Engine, Tensor } from "../runtime/engine.ts";
import { classify, loadClassNames, type Prediction } from "../runtime/onnx/classify.ts";
import { createOnnxEngine, type OnnxEngine } from "../runtime/onnx/engine.ts";
import { readExpected } from "../runtime/onnx/inputs/expected.ts";
import { openNpy } from "../runtime/onnx/inputs/npy.ts";
import { preprocess } from "../runtime/onnx/inputs/preprocess.ts";
import { detectFormat, type InputBatch, openImageInput } from "../runtime/onnx/inputs/source.ts";
import type { Signature } from "../runtime/onnx/session.ts";
import { toNumbers } from "../runtime/onnx/tensors.ts";
import { throwIfAborted } from "../util/abort.ts";
import { InvalidInputError, RuntimeError, UsageError } from "../util/errors.ts";
import type { CliContext } from "./command.ts";
import { DEFAULT_BATCH, DEFAULT_TOP, MAX_BATCH, MAX_TOP } from "./run-onnx-options.ts";

/**
 * `infernet run <onnx model> --input ...`. Image classifiers (catalog models with a `vision` spec)
 * print one prediction per record as soon as each batch is done; with `--labels` they also score
 * themselves: plain output puts the accuracy on stderr (stdout stays one line per record, for
 * `cut`/`awk`), `--json` ends the JSON lines with a `{"summary": ...}` object. Other ONNX models take
 * a `.npy` array for their single input and print their outputs as JSON.
 */

export interface RunOnnxOptions {
  input?: string;
  /** Expected classes, to score a classifier. */
  labels?: string;
  json: boolean;
  top?: number;
  batch?: number;
}

/**
 * Runs an ONNX model here, or on `remote` (the network, for catalog image classifiers: the catalog says
 * what the input looks like, so the client needs no model file).
 */
export async function runOnnx(
  ctx: CliContext,
  model: ResolvedModel,
  options: RunOnnxOptions,
  remote?: Engine,
): Promise<number> {
  if (options.input === undefined) {
    throw new UsageError(`run: ${model.name} is an ONNX model and needs --input`, {
      hint: `e.g. infernet run ${model.name} --input digit.png (an image, a folder of images, an IDX file or a .npy array)`,
    });
  }
  const top = checkedFlag("top", options.top ?? DEFAULT_TOP, MAX_TOP);
  const batch = checkedFlag("batch", options.batch ?? DEFAULT_BATCH, MAX_BATCH);
  const spec = model.entry?.vision;
  if (remote) {
    if (!spec) throw new UsageError(`run: ${model.name} has no catalog vision spec, so it can only run here (--local)`);
    const signature: Signature = {
      inputs: [{ name: spec.input, type: spec.inputType, shape: [] }],
      outputs: [{ name: spec.output, type: undefined, shape: [] }],
    };
    return await classifyInput(ctx, remote, model, signature, spec, { ...options, input: options.input, top, batch });
  }
  const threads = ctx.config().threads;
  await using engine = createOnnxEngine(threads > 0 ? { intraOpNumThreads: threads } : {});
  const signature = await engine.signature(model, { signal: ctx.signal });
  if (spec)
    return await classifyInput(ctx, engine, model, signature, spec, { ...options, input: options.input, top, batch });
  if (options.labels !== undefined) {
    throw new UsageError(`run: --labels scores image classifiers, and ${model.name} has no catalog vision spec`);
  }
  return await tensorInput(ctx, engine, model, signature, options.input, batch);
}

interface Resolved {
  input: string;
  labels?: string;
  json: boolean;
  top: number;
  batch: number;
}

async function classifyInput(
  ctx: CliContext,
  engine: Engine,
  model: ResolvedModel,
  signature: Signature,
  spec: VisionSpec,
  options: Resolved,
): Promise<number> {
  const { signal } = ctx;
  const input = signature.inputs.find((i) => i.name === spec.input);
  if (!input?.type || !signature.outputs.some((o) => o.name === spec.output)) {
    throw new RuntimeError(
      `the catalog spec of ${model.name} names input "${spec.input}" and output "${spec.output}", which the model file lacks`,
    );
  }
  const inputType = input.type as Tensor["type"];
  const classNames = await loadClassNames(spec, model, signal);
  await using source = await openImageInput(options.input, signal);
  const expected = options.labels !== undefined ? await readExpected(options.labels, classNames, signal) : undefined;
  if (expected && expected.length !== source.records) {
    throw new InvalidInputError(`--labels has ${expected.length} labels for ${source.records} input records`, {
      hint: "give the label file that belongs to the --input data",
    });
  }
  const detailed = source.records === 1 && !expected && !options.json;
  const step = batchStep(options.batch, input.shape[0]);
  let correct = 0;
  for (;;) {
    throwIfAborted(signal);
    const chunk = await source.next(step, signal);
    if (!chunk) break;
    const tensor = chunk.images ? preprocess(chunk.images, spec, inputType) : (chunk.tensor as Tensor);
    const output = await runOnce(engine, model, { [spec.input]: tensor }, [spec.output], signal);
    const predictions = classify(output[spec.output] as Tensor, spec.outputKind, classNames, options.top);
    if (detailed) {
      ctx.stdout.write(formatDetailed(predictions[0] as Prediction));
      continue;
    }
    const lines: string[] = [];
    predictions.forEach((p, i) => {
      const index = chunk.start + i;
      const want = expected?.[index];
      if (want !== undefined && want === p.class) correct += 1;
      const wantLabel = want === undefined ? undefined : (classNames?.[want] ?? String(want));
      lines.push(options.json ? formatJson(chunk, i, p, want, wantLabel) : formatLine(chunk, i, p, wantLabel));
    });
    ctx.stdout.write(`${lines.join("\n")}\n`);
  }
  if (expected) {
    const accuracy = source.records ? correct / source.records : 0;
    if (options.json)
      ctx.stdout.write(`${JSON.stringify({ summary: { records: source.records, correct, accuracy } })}\n`);
    else ctx.stderr.write(`accuracy: ${correct}/${source.records} (${(accuracy * 100).toFixed(2)}%)\n`);
  }
  return 0;
}

/** A `.npy` fed to a model's only input; each batch's outputs printed as one JSON line. */
async function tensorInput(
  ctx: CliContext,
  engine: OnnxEngine,
  model: ResolvedModel,
  signature: Signature,
  path: string,
  batch: number,
): Promise<number> {
  const { signal } = ctx;
  const format = await detectFormat(path);
  if (format !== "npy") {
    throw new UsageError(
      `run: ${model.name} has no image preprocessing in the catalog, so it takes a .npy array, not ${describeFormat(format)}`,
      {
        hint: "save its input tensor with numpy.save and pass that file as --input",
      },
    );
  }
  const [input, ...others] = signature.inputs;
  if (!input || others.length) {
    throw new UsageError(
      `run: ${model.name} has ${signature.inputs.length} inputs; --input feeds models with exactly one`,
    );
  }
  await using npy = await openNpy(path, signal);
  // An array without the batch dimension is one record.
  const single = npy.dims.length === input.shape.length - 1;
  const records = single ? 1 : (npy.dims[0] ?? 1);
  const step = batchStep(batch, input.shape[0]);
  for (let start = 0; start < records; start += step) {
    throwIfAborted(signal);
    const read = await npy.read(single ? 0 : start, single ? 1 : step, signal);
    const tensor = single ? { ...read, dims: [1, ...npy.dims] } : read;
    const outputs = await runOnce(engine, model, { [input.name]: tensor }, undefined, signal);
    const json: Record<string, { type: string; dims: number[]; data: number[] }> = {};
    for (const [name, t] of Object.entries(outputs)) json[name] = { type: t.type, dims: t.dims, data: toNumbers(t) };
    ctx.stdout.write(`${JSON.stringify({ index: start, outputs: json })}\n`);
  }
  return 0;
}

async function runOnce(
  engine: Engine,
  model: ResolvedModel,
  inputs: Record<string, Tensor>,
  outputs: string[] | undefined,
  signal: AbortSignal,
): Promise<Record<string, Tensor>> {
  let result: Record<string, Tensor> | undefined;
  for await (const event of engine.run(
    model,
    { kind: "tensor", inputs, ...(outputs ? { outputs } : {}) },
    { signal },
  )) {
    if (event.type === "tensors") result = event.outputs;
  }
  if (!result) throw new RuntimeError(`${model.name} returned no outputs`);
  return result;
}

/** Records per call: `--batch`, rounded up to a whole number of the model's fixed batch size. */
function batchStep(batch: number, fixed: number | string | undefined): number {
  return typeof fixed === "number" && fixed > 1 ? Math.ceil(batch / fixed) * fixed : batch;
}

function formatDetailed(p: Prediction): string {
  const rows = p.top.map((t) => `  ${t.score.toFixed(4)}  ${t.label}`);
  return `${p.label}\n${rows.join("\n")}\n`;
}

/** `<record>\t<label>\t<score>[\t<expected>]`: the record is its file name for images, else its index. */
function formatLine(chunk: InputBatch, i: number, p: Prediction, expected: string | undefined): string {
  const id = chunk.names?.[i] ?? String(chunk.start + i);
  return `${id}\t${p.label}\t${p.score.toFixed(4)}${expected === undefined ? "" : `\t${expected}`}`;
}

function formatJson(
  chunk: InputBatch,
  i: number,
  p: Prediction,
  want: number | undefined,
  wantLabel: string | undefined,
): string {
  return JSON.stringify({
    index: chunk.start + i,
    ...(chunk.names ? { file: chunk.names[i] } : {}),
    class: p.class,
    label: p.label,
    score: p.score,
    top: p.top,
    ...(want === undefined ? {} : { expected: wantLabel, expectedClass: want, correct: want === p.class }),
  });
}

function describeFormat(format: string): string {
  return format === "folder" ? "a folder of images" : format === "idx" ? "an IDX file" : "an image";
}

function checkedFlag(flag: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new UsageError(`run: --${flag} must be a whole number from 1 to ${max}, got ${value}`);
  }
  return value;
}
