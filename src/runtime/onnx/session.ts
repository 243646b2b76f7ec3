import { stat } from "node:fs/promises";
import type { InferenceSession } from "onnxruntime-node";
import { throwIfAborted } from "../../util/abort.ts";
import { errorMessage, FileNotFoundError, IntegrityError, RuntimeError } from "../../util/errors.ts";
import type { Tensor } from "../engine.ts";
import { hasArrayOf, isTensorType } from "./tensors.ts";

/**
 * The one typed boundary around onnxruntime-node. Everything the rest of Infernet sees is its own
 * `Tensor`; the native binding only ever gets plain `{type, dims, data, location}` feeds. That is
 * deliberate: `new ort.Tensor("float16", uint16Bits)` re-wraps the bits in Bun's `Float16Array`,
 * which the binding reads as an empty buffer, so no ort `Tensor` is ever built for a feed.
 */

/** One input or output as the model declares it; symbolic dimensions are names. */
export interface ValueInfo {
  name: string;
  /** Element type as onnxruntime names it, or `undefined` for a non-tensor value (sequence, map). */
  type: string | undefined;
  shape: ReadonlyArray<number | string>;
}

export interface Signature {
  inputs: ValueInfo[];
  outputs: ValueInfo[];
}

/**
 * Models smaller than this run with one thread per operator by default. For a model as small as
 * mnist-8 (26 KB) waking a thread pool costs as much as the work: bench/onnx.ts on a 2-core machine
 * measured 23,000-25,000 images/s with one thread against 11,700-23,300 with the default pool (worse
 * whenever the machine is busy). SqueezeNet (2.4 MB) is the other way round: 7.3 ms per image with
 * one thread, 4.1-4.5 ms with the default pool.
 */
export const SMALL_MODEL_BYTES = 1024 * 1024;

/** Settings for one loaded model. */
export interface SessionSettings {
  /** Threads one operator may use; 0 = one per core (onnxruntime's default); unset = by model size. */
  intraOpNumThreads?: number;
  /** Threads for running independent operators in parallel (1 = sequential execution). */
  interOpNumThreads: number;
}

export interface OnnxSession {
  readonly path: string;
  readonly signature: Signature;
  /** Runs the model once; the feeds must already match the signature (see validate.ts). */
  run(feeds: Record<string, Tensor>, outputs: readonly string[]): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

/** What the binding reads from a feed; see the note at the top for why this is not an ort `Tensor`. */
interface NativeFeed {
  type: Tensor["type"];
  dims: readonly number[];
  data: Tensor["data"];
  location: "cpu";
}

type Ort = typeof import("onnxruntime-node");

let ortModule: Promise<Ort> | undefined;

/** Loads the native addon on first use, so commands that never touch ONNX never pay for it. */
function ort(): Promise<Ort> {
  ortModule ??= import("onnxruntime-node");
  return ortModule;
}

/** Opens `path` as an ONNX model. Missing, empty or non-ONNX files become typed errors, not crashes. */
export async function openSession(path: string, settings: SessionSettings, signal?: AbortSignal): Promise<OnnxSession> {
  throwIfAborted(signal);
  const info = await stat(path).catch((cause: unknown) => {
    throw new FileNotFoundError(`model file ${path} does not exist or cannot be read`, {
      hint: "check the path, or use a catalog model name (`infernet models`)",
      cause,
    });
  });
  if (!info.isFile()) throw new FileNotFoundError(`model path ${path} is not a file`);
  if (info.size === 0) throw new IntegrityError(`model file ${path} is empty`, { hint: "download it again" });

  const { InferenceSession } = await ort();
  throwIfAborted(signal);
  let session: InferenceSession;
  try {
    session = await InferenceSession.create(path, {
      intraOpNumThreads: settings.intraOpNumThreads ?? (info.size < SMALL_MODEL_BYTES ? 1 : 0),
      interOpNumThreads: settings.interOpNumThreads,
      executionMode: settings.interOpNumThreads > 1 ? "parallel" : "sequential",
      graphOptimizationLevel: "all",
    });
  } catch (cause) {
    throw loadError(path, cause);
  }
  const signature: Signature = {
    inputs: session.inputMetadata.map(valueInfo),
    outputs: session.outputMetadata.map(valueInfo),
  };
  return {
    path,
    signature,
    async run(feeds, outputs) {
      const native: Record<string, NativeFeed> = {};
      for (const [name, t] of Object.entries(feeds))
        native[name] = { type: t.type, dims: t.dims, data: t.data, location: "cpu" };
      let results: InferenceSession.ReturnType;
      try {
        results = await session.run(native as unknown as InferenceSession.FeedsType, outputs as string[]);
      } catch (cause) {
        throw new RuntimeError(`onnxruntime failed to run ${path}: ${firstLine(errorMessage(cause))}`, { cause });
      }
      const out: Record<string, Tensor> = {};
      for (const name of outputs) {
        const value = results[name];
        if (!value) throw new RuntimeError(`onnxruntime returned no output "${name}" for ${path}`);
        out[name] = fromNative(name, value.type, value.dims, value.data);
      }
      return out;
    },
    release: () => session.release(),
  };
}

function valueInfo(m: InferenceSession.ValueMetadata): ValueInfo {
  return m.isTensor
    ? { name: m.name, type: m.type, shape: [...m.shape] }
    : { name: m.name, type: undefined, shape: [] };
}

function fromNative(name: string, type: string, dims: readonly number[], data: unknown): Tensor {
  if (!isTensorType(type)) {
    throw new RuntimeError(`model output "${name}" has element type ${type}, which Infernet cannot return yet`);
  }
  let array = data;
  // The binding hands float16 back as Bun's Float16Array; reinterpret the same bytes as bits.
  if (type === "float16" && ArrayBuffer.isView(array) && !(array instanceof Uint16Array)) {
    array = new Uint16Array(array.buffer, array.byteOffset, array.byteLength / 2);
  }
  if (type === "bool" && ArrayBuffer.isView(array) && !(array instanceof Uint8Array)) {
    array = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  }
  if (!hasArrayOf(type, array)) throw new RuntimeError(`model output "${name}" came back in an unexpected form`);
  return { type, dims: [...dims], data: array as Tensor["data"] };
}

/** onnxruntime says "Protobuf parsing failed" for bytes that are not a model at all. */
const NOT_A_MODEL = /protobuf parsing failed|does not have a graph|invalid model|model format/i;

function loadError(path: string, cause: unknown): Error {
  const message = firstLine(errorMessage(cause));
  if (NOT_A_MODEL.test(message)) {
    return new IntegrityError(`${path} is not a valid ONNX model`, {
      hint: "the file is damaged or is not ONNX: download it again or check the path",
      cause,
    });
  }
  return new RuntimeError(`onnxruntime cannot load ${path}: ${message}`, {
    hint: "the model may need a newer onnxruntime or an operator it lacks",
    cause,
  });
}

function firstLine(text: string): string {
  return (text.split("\n")[0] ?? "").trim();
}
