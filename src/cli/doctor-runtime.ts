import type { Config } from "../config/index.ts";
import { cacheStatus } from "../models/cache.ts";
import { modelFile, requireModel } from "../models/catalog.ts";
import { resolveLocalModel } from "../models/local.ts";
import type { InferenceEvent } from "../runtime/engine.ts";
import { type DetectNvidiaOptions, detectNvidia } from "../runtime/hardware/index.ts";
import { createLlamaEngine } from "../runtime/llama/engine.ts";
import { createOnnxEngine } from "../runtime/onnx/engine.ts";
import type { Store } from "../store/db.ts";
import { errorMessage } from "../util/errors.ts";
import { type CheckResult, hintOf, notOk, ok } from "./doctor-checks.ts";

/**
 * `infernet doctor`'s hardware and runtime checks: the GPU driver, and each native runtime loading a
 * real tiny model and running it once. Models are never downloaded here: a model that is not in the
 * cache is a skipped check, with the command that fetches it.
 */

/** The language model the llama check generates with (1 MB, in every install's catalog). */
export const DOCTOR_LLAMA_MODEL = "stories260k";
/** The classifier the ONNX check runs (26 KB). */
export const DOCTOR_ONNX_MODEL = "mnist-8";
/** Tokens the llama check generates: enough to prove decoding works, a few ms. */
export const DOCTOR_TOKENS = 8;
/** A fixed thread count, so the check does not spend seconds calibrating. */
const DOCTOR_THREADS = 2;

export async function checkGpu(options: DetectNvidiaOptions = {}): Promise<CheckResult> {
  const found = await detectNvidia({ xml: false, ...options });
  if (found.gpus.length === 0) {
    return notOk(
      "gpu",
      "warn",
      `CPU only: ${found.reason ?? "no NVIDIA GPU listed"}`,
      "to serve on an NVIDIA GPU, install its driver so that `nvidia-smi` works; CPU inference works without it",
    );
  }
  const names = found.gpus.map((g) => g.name).join(", ");
  const driver = found.driverVersion ?? found.gpus[0]?.driverVersion;
  return ok("gpu", `${found.gpus.length} NVIDIA GPU(s): ${names}${driver ? `, driver ${driver}` : ""}`);
}

/** Whether a catalog model's files are all in the cache (verified or still to be re-hashed). */
function present(config: Config, store: Store, name: string): boolean {
  const entry = requireModel(name);
  return entry.files.every((f) => cacheStatus(config, store, entry, f) !== "missing");
}

function skipped(check: string, model: string, config: Config): CheckResult {
  return notOk(
    check,
    "skip",
    `skipped: ${model} is not downloaded (in ${config.modelsDir})`,
    `run \`infernet pull ${model}\` and run doctor again to test this runtime`,
  );
}

export async function checkLlama(config: Config, store: Store, signal?: AbortSignal): Promise<CheckResult> {
  if (!present(config, store, DOCTOR_LLAMA_MODEL)) return skipped("runtime: llama", DOCTOR_LLAMA_MODEL, config);
  const engine = createLlamaEngine({ gpu: config.gpu, threads: config.threads || DOCTOR_THREADS, contextSize: 256 });
  try {
    const model = await resolveLocalModel(DOCTOR_LLAMA_MODEL, { config, store, ...(signal ? { signal } : {}) });
    let tokens = 0;
    for await (const event of engine.run(
      model,
      { kind: "generate", prompt: "Once upon a time", maxTokens: DOCTOR_TOKENS, temperature: 0 },
      signal ? { signal } : {},
    )) {
      if (event.type === "token") tokens += event.tokens.length;
    }
    if (tokens === 0) {
      return notOk(
        "runtime: llama",
        "fail",
        `${DOCTOR_LLAMA_MODEL} generated nothing`,
        "rerun with INFERNET_LOG=debug and report it",
      );
    }
    return ok(
      "runtime: llama",
      `node-llama-cpp (${await engine.backend()}) generated ${tokens} tokens with ${DOCTOR_LLAMA_MODEL}`,
    );
  } catch (err) {
    return notOk(
      "runtime: llama",
      "fail",
      `node-llama-cpp: ${errorMessage(err)}`,
      hintOf(err, "reinstall Infernet (the llama runtime is damaged); INFERNET_GPU=cpu rules out the GPU backend"),
    );
  } finally {
    await engine.dispose();
  }
}

export async function checkOnnx(config: Config, store: Store, signal?: AbortSignal): Promise<CheckResult> {
  if (!present(config, store, DOCTOR_ONNX_MODEL)) return skipped("runtime: onnx", DOCTOR_ONNX_MODEL, config);
  await using engine = createOnnxEngine({ intraOpNumThreads: config.threads || DOCTOR_THREADS });
  try {
    const model = await resolveLocalModel(DOCTOR_ONNX_MODEL, { config, store, ...(signal ? { signal } : {}) });
    const spec = requireModel(DOCTOR_ONNX_MODEL).vision;
    if (!spec) throw new Error(`${DOCTOR_ONNX_MODEL} has no vision spec in the catalog`);
    const size = spec.width * spec.height;
    let outputs = 0;
    const events: AsyncIterable<InferenceEvent> = engine.run(
      model,
      {
        kind: "tensor",
        inputs: {
          [spec.input]: { type: "float32", dims: [1, 1, spec.height, spec.width], data: new Float32Array(size) },
        },
      },
      signal ? { signal } : {},
    );
    for await (const event of events) {
      if (event.type === "tensors") outputs += Object.values(event.outputs).reduce((n, t) => n + t.data.length, 0);
    }
    if (outputs === 0) {
      return notOk(
        "runtime: onnx",
        "fail",
        `${DOCTOR_ONNX_MODEL} returned no output`,
        "rerun with INFERNET_LOG=debug and report it",
      );
    }
    return ok(
      "runtime: onnx",
      `onnxruntime ran ${DOCTOR_ONNX_MODEL} (${modelFile(requireModel(DOCTOR_ONNX_MODEL)).file}): ${outputs} outputs`,
    );
  } catch (err) {
    return notOk(
      "runtime: onnx",
      "fail",
      `onnxruntime: ${errorMessage(err)}`,
      hintOf(err, "reinstall Infernet (the onnx runtime is damaged)"),
    );
  }
}
