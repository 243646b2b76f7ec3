import { totalmem } from "node:os";
import { currentMachineFingerprint } from "../runtime/hardware/index.ts";
import { createLlamaEngine, type LlamaEngine } from "../runtime/llama/engine.ts";
import { sqliteCalibrationStore } from "../store/calibrations.ts";
import type { CliContext } from "./command.ts";

/** The llama engine as configured for this process (flags > env > config file). */
export async function llamaEngineFor(ctx: CliContext): Promise<LlamaEngine> {
  const config = ctx.config();
  return createLlamaEngine({
    gpu: config.gpu,
    threads: config.threads,
    contextSize: config.contextSize,
    defaultMaxTokens: config.maxTokens,
    maxLoadedBytes: config.maxLoadedModelMb > 0 ? config.maxLoadedModelMb * 1024 * 1024 : Math.floor(totalmem() / 2),
    calibrations: sqliteCalibrationStore(ctx.store()),
    machine: await currentMachineFingerprint(ctx.signal),
  });
}
