import { totalmem } from "node:os";
import type { Config } from "../config/index.ts";
import type { Engine, RuntimeName } from "../runtime/engine.ts";
import { currentMachineFingerprint } from "../runtime/hardware/index.ts";
import { createLlamaEngine, type LlamaEngine } from "../runtime/llama/engine.ts";
import { createOnnxEngine } from "../runtime/onnx/engine.ts";
import { sqliteCalibrationStore } from "../store/calibrations.ts";
import type { Store } from "../store/db.ts";

/** The llama engine as configured (flags > env > config file), calibrations kept in the store. */
export async function configuredLlamaEngine(config: Config, store: Store, signal?: AbortSignal): Promise<LlamaEngine> {
  return createLlamaEngine({
    gpu: config.gpu,
    threads: config.threads,
    contextSize: config.contextSize,
    defaultMaxTokens: config.maxTokens,
    maxLoadedBytes: config.maxLoadedModelMb > 0 ? config.maxLoadedModelMb * 1024 * 1024 : Math.floor(totalmem() / 2),
    calibrations: sqliteCalibrationStore(store),
    machine: await currentMachineFingerprint(signal),
  });
}

/** Both engines, as a node serving models needs them. */
export async function configuredEngines(
  config: Config,
  store: Store,
  signal?: AbortSignal,
): Promise<Record<RuntimeName, Engine>> {
  return {
    llama: await configuredLlamaEngine(config, store, signal),
    onnx: createOnnxEngine(config.threads > 0 ? { intraOpNumThreads: config.threads } : {}),
  };
}
