import { InvalidInputError, RuntimeError } from "../../util/errors.ts";
import type { Tensor, TensorType } from "../engine.ts";
import type { Signature, ValueInfo } from "./session.ts";
import { ARRAY_OF, describe, elementCount, hasArrayOf, isTensorType } from "./tensors.ts";

/**
 * Checks a request against the model's declared inputs before any of it reaches native code, so a
 * wrong name, type or shape is a clear `InvalidInputError` (expected vs got) instead of an
 * onnxruntime message or a crash, and works out how the batch must be split.
 */
export interface BatchPlan {
  /** Records in the request: dimension 0 of every input (1 for models whose inputs have no batch dimension). */
  records: number;
  /** Records per native run: the model's fixed batch size, or every record at once when dimension 0 is free. */
  step: number;
  /** False when some input has rank 0, so the request is fed exactly as given, in one run. */
  batched: boolean;
}

export function planBatches(model: string, signature: Signature, inputs: Record<string, Tensor>): BatchPlan {
  const declared = new Map(signature.inputs.map((v) => [v.name, v]));
  for (const name of Object.keys(inputs)) {
    if (!declared.has(name)) {
      throw new InvalidInputError(`${model} has no input "${name}"; it takes ${list(signature.inputs)}`);
    }
  }
  const missing = signature.inputs.filter((v) => !(v.name in inputs));
  if (missing.length) {
    throw new InvalidInputError(`${model} needs input ${list(missing)}, which the request lacks`);
  }

  const batched = signature.inputs.every((v) => v.shape.length > 0);
  let records: number | undefined;
  let step: number | undefined;
  for (const info of signature.inputs) {
    const tensor = inputs[info.name] as Tensor;
    checkOne(model, info, tensor, batched);
    if (!batched) continue;
    const n = tensor.dims[0] as number;
    if (records !== undefined && n !== records) {
      throw new InvalidInputError(
        `${model}: every input needs the same number of records (dimension 0); "${info.name}" has ${n}, others ${records}`,
      );
    }
    records = n;
    const fixed = info.shape[0];
    if (typeof fixed === "number") {
      if (step !== undefined && step !== fixed) {
        throw new RuntimeError(`${model} declares different fixed batch sizes (${step} and ${fixed}) on its inputs`);
      }
      step = fixed;
    }
  }
  if (!batched) return { records: 1, step: 1, batched };
  const total = records ?? 0;
  return { records: total, step: step ?? total, batched };
}

/** Checks requested output names; undefined means all of them. */
export function selectOutputs(model: string, signature: Signature, requested: readonly string[] | undefined): string[] {
  const names = signature.outputs.map((o) => o.name);
  if (!requested) return names;
  if (requested.length === 0) throw new InvalidInputError(`${model}: the request asks for no outputs`);
  for (const name of requested) {
    if (!names.includes(name)) {
      throw new InvalidInputError(`${model} has no output "${name}"; its outputs are ${list(signature.outputs)}`);
    }
  }
  return [...requested];
}

function checkOne(model: string, info: ValueInfo, tensor: Tensor, batched: boolean): void {
  const where = `${model} input "${info.name}"`;
  const expected = expectedText(info);
  if (info.type === undefined) {
    throw new RuntimeError(`${where} is not a tensor (a sequence or map), which Infernet cannot feed`);
  }
  if (!isTensorType(info.type)) {
    throw new RuntimeError(`${where} takes ${info.type} elements, which Infernet cannot feed yet`);
  }
  const got = isTensorType(tensor.type) && Array.isArray(tensor.dims) ? describe(tensor) : "a malformed tensor";
  if (tensor.type !== info.type) {
    throw new InvalidInputError(`${where} expects ${expected}, got ${got}`, {
      hint: info.type === "float16" ? "float16 data is a Uint16Array of IEEE half bits" : undefined,
    });
  }
  if (tensor.dims.length !== info.shape.length) {
    throw new InvalidInputError(`${where} expects ${expected} (rank ${info.shape.length}), got ${got}`);
  }
  tensor.dims.forEach((d, i) => {
    if (!Number.isInteger(d) || d < 1) {
      throw new InvalidInputError(`${where}: dimension ${i} must be a positive whole number, got ${got}`);
    }
    const want = info.shape[i];
    if (typeof want !== "number") return;
    if (i === 0 && batched) {
      // A fixed batch size still takes any whole number of batches: the engine splits them.
      if (d % want !== 0) {
        throw new InvalidInputError(`${where} expects ${expected} (records in multiples of ${want}), got ${got}`);
      }
    } else if (d !== want) {
      throw new InvalidInputError(`${where} expects ${expected}, got ${got}`);
    }
  });
  if (!hasArrayOf(info.type, tensor.data)) {
    throw new InvalidInputError(`${where}: ${info.type} data must be a ${arrayName(info.type)}`);
  }
  const need = elementCount(tensor.dims);
  if (tensor.data.length !== need) {
    throw new InvalidInputError(`${where}: ${got} needs ${need} elements, the data has ${tensor.data.length}`);
  }
}

function arrayName(type: TensorType): string {
  return type === "float16" ? "Uint16Array of half bits" : ARRAY_OF[type].name;
}

function expectedText(info: ValueInfo): string {
  return `${info.type ?? "non-tensor"}[${info.shape.join(",")}]`;
}

function list(values: readonly ValueInfo[]): string {
  return values.map((v) => `"${v.name}" ${expectedText(v)}`).join(", ");
}
