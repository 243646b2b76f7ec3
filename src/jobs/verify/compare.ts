import type { Tensor } from "../../runtime/engine.ts";
import type { ShardResult } from "../records.ts";
import { resultCount } from "./records.ts";

/**
 * When two results for the same records count as the same answer. Different hardware and builds
 * round differently, so tensors agree within a tolerance rather than bit for bit:
 * |a - b| <= atol + rtol * |b| for every element, and for a classifier (a 2-D float output, one row
 * of scores per record) the top class must be the same too, since that is the answer a client uses.
 * Integer and boolean tensors, and text, agree only exactly (text that differs goes to re-scoring,
 * see text.ts). A model's tolerance comes from its catalog entry (`verify`), else these defaults.
 */

export interface Tolerance {
  atol: number;
  rtol: number;
}

/**
 * Defaults for float outputs: ONNX Runtime's CPU and CUDA kernels differ by ~1e-5 relative on
 * classifier logits (fused vs unfused ops); 1e-3 leaves a wide margin and still catches any
 * changed answer, which moves scores by far more.
 */
export const DEFAULT_TOLERANCE: Tolerance = { atol: 1e-4, rtol: 1e-3 };

export type Comparison =
  | { same: true }
  /** Same shape, these records (by position) differ. */
  | { same: false; records: number[] }
  /** Not comparable record by record (kind, shape or type differ): every record counts as different. */
  | { same: false; records: "all"; reason: string };

/** Whether `a` and `b` agree, and if not on which records. */
export function compareResults(a: ShardResult, b: ShardResult, tolerance: Tolerance = DEFAULT_TOLERANCE): Comparison {
  if (a.kind !== b.kind) return { same: false, records: "all", reason: `${a.kind} result against ${b.kind}` };
  if (resultCount(a) !== resultCount(b)) {
    return { same: false, records: "all", reason: `${resultCount(a)} records against ${resultCount(b)}` };
  }
  if (a.kind === "text" && b.kind === "text") {
    const records = a.outputs.flatMap((text, i) => (text === b.outputs[i] ? [] : [i]));
    return records.length === 0 ? { same: true } : { same: false, records };
  }
  if (a.kind === "tensor" && b.kind === "tensor") return compareTensors(a.output, b.output, tolerance);
  return { same: false, records: "all", reason: "unknown result kind" };
}

export function sameAnswer(a: ShardResult, b: ShardResult, tolerance: Tolerance = DEFAULT_TOLERANCE): boolean {
  return compareResults(a, b, tolerance).same;
}

function compareTensors(a: Tensor, b: Tensor, tolerance: Tolerance): Comparison {
  if (a.type !== b.type) return { same: false, records: "all", reason: `${a.type} tensor against ${b.type}` };
  if (a.dims.join() !== b.dims.join()) {
    return { same: false, records: "all", reason: `shape [${a.dims}] against [${b.dims}]` };
  }
  const rows = a.dims[0] ?? 0;
  const width = rows === 0 ? 0 : a.data.length / rows;
  const classifier = a.dims.length === 2 && (a.type === "float32" || a.type === "float16");
  const records: number[] = [];
  for (let r = 0; r < rows; r++) {
    if (!rowsAgree(a, b, r * width, width, tolerance, classifier)) records.push(r);
  }
  return records.length === 0 ? { same: true } : { same: false, records };
}

function rowsAgree(a: Tensor, b: Tensor, start: number, width: number, tol: Tolerance, classifier: boolean): boolean {
  const float = a.type === "float32" || a.type === "float16";
  const x = a.data;
  const y = b.data;
  let topA = start;
  let topB = start;
  for (let i = start; i < start + width; i++) {
    if (!float) {
      if (x[i] !== y[i]) return false;
      continue;
    }
    const u = a.type === "float16" ? half(x[i] as number) : (x[i] as number);
    const v = a.type === "float16" ? half(y[i] as number) : (y[i] as number);
    // NaN equals nothing, so a NaN in either fails the comparison.
    if (!(Math.abs(u - v) <= tol.atol + tol.rtol * Math.abs(v))) return false;
    if (classifier) {
      if (u > valueAt(a, topA)) topA = i;
      if (v > valueAt(b, topB)) topB = i;
    }
  }
  return !classifier || topA === topB;
}

function valueAt(t: Tensor, i: number): number {
  return t.type === "float16" ? half(t.data[i] as number) : (t.data[i] as number);
}

/** An IEEE 754 half (its 16 bits) as a number. */
export function half(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 0x1f) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}
