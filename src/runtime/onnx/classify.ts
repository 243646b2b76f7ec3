import { readFile, stat } from "node:fs/promises";
import { z } from "zod";
import type { VisionSpec } from "../../models/catalog.ts";
import { throwIfAborted } from "../../util/abort.ts";
import { errorMessage, IntegrityError, RuntimeError } from "../../util/errors.ts";
import type { LocalModel, Tensor } from "../engine.ts";
import { fromHalfArray } from "./float16.ts";

/**
 * Classifier outputs made readable: scores (softmax over logits, or the model's probabilities as
 * they are), the top k classes per record, and class names from the catalog spec or its labels file.
 */

/** Largest class-names file read (ImageNet's 1,000 names are 34 KB). */
export const MAX_CLASS_NAMES_BYTES = 16 * 1024 ** 2;

export interface Scored {
  /** Class index. */
  class: number;
  /** Class name, or the index as text when the model has no names. */
  label: string;
  score: number;
}

export interface Prediction extends Scored {
  /** The best `k` classes, best first (the first is the prediction itself). */
  top: Scored[];
}

/** One prediction per record of `output` (`[records, ...classes]`). */
export function classify(
  output: Tensor,
  outputKind: VisionSpec["outputKind"],
  classNames: readonly string[] | undefined,
  k: number,
): Prediction[] {
  const records = output.dims[0] ?? 1;
  const values = scores(output);
  const classes = records > 0 ? values.length / records : 0;
  const predictions: Prediction[] = [];
  for (let r = 0; r < records; r++) {
    const row = values.subarray(r * classes, (r + 1) * classes);
    if (outputKind === "logits") softmax(row);
    const top = topK(row, Math.min(k, classes)).map((c) => ({
      class: c,
      label: classNames?.[c] ?? String(c),
      score: row[c] as number,
    }));
    const best = top[0];
    if (!best) throw new RuntimeError("the model returned no classes");
    predictions.push({ ...best, top });
  }
  return predictions;
}

function scores(output: Tensor): Float32Array {
  if (output.type === "float32") return Float32Array.from(output.data as Float32Array);
  if (output.type === "float16") return fromHalfArray(output.data as Uint16Array);
  throw new RuntimeError(`a classifier output of type ${output.type} cannot be scored`);
}

/** In place, numerically stable (subtracts the maximum first). */
export function softmax(row: Float32Array): void {
  let max = Number.NEGATIVE_INFINITY;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  const exps = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) {
    exps[i] = Math.exp((row[i] as number) - max);
    sum += exps[i] as number;
  }
  for (let i = 0; i < row.length; i++) row[i] = (exps[i] as number) / sum;
}

/** Indices of the `k` largest values, largest first; ties keep the lower index first. */
export function topK(row: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number;
    if (best.length === k && v <= (row[best[k - 1] as number] as number)) continue;
    let at = best.length;
    while (at > 0 && (row[best[at - 1] as number] as number) < v) at--;
    best.splice(at, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}

const ClassNamesSchema = z.union([z.array(z.string()), z.record(z.string().regex(/^\d+$/), z.string())]);

/** Class names from the spec: inline, or the model's file for the `labelsFile` role; undefined when neither. */
export async function loadClassNames(
  spec: VisionSpec,
  model: Pick<LocalModel, "extras">,
  signal?: AbortSignal,
): Promise<string[] | undefined> {
  if (spec.labels) return spec.labels;
  const path = spec.labelsFile ? model.extras?.[spec.labelsFile] : undefined;
  if (!path) return undefined;
  throwIfAborted(signal);
  const size = (await stat(path)).size;
  if (size > MAX_CLASS_NAMES_BYTES)
    throw new IntegrityError(`class names file ${path} is ${size} bytes, more than ${MAX_CLASS_NAMES_BYTES}`);
  let parsed: z.infer<typeof ClassNamesSchema>;
  try {
    parsed = ClassNamesSchema.parse(JSON.parse(await readFile(path, "utf8")));
  } catch (cause) {
    throw new IntegrityError(
      `class names file ${path} is not a JSON array or index->name object: ${errorMessage(cause)}`,
      { cause },
    );
  }
  if (Array.isArray(parsed)) return parsed;
  const names: string[] = [];
  for (const [key, name] of Object.entries(parsed)) names[Number(key)] = name;
  return Array.from(names, (n, i) => n ?? String(i));
}
