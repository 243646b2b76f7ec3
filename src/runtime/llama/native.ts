import type { Llama, LlamaLogLevel } from "node-llama-cpp";
import type { GpuChoice } from "../../config/index.ts";
import { errorMessage, RuntimeError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";

/**
 * The one typed boundary around node-llama-cpp's native addon. Everything else in Infernet talks to
 * llama.cpp through this module and `engine.ts`.
 */
const log = logger("runtime:llama");

const instances = new Map<GpuChoice, Promise<Llama>>();

/**
 * Returns the process-wide llama.cpp instance for a GPU choice. "auto" is node-llama-cpp's ordered
 * fallback (CUDA, Vulkan or Metal if a working prebuilt binary and device exist, else CPU); naming a
 * backend makes its absence an error instead of a silent CPU run. Never builds from source: a user
 * machine has no toolchain, and a build would hang a command for minutes.
 */
export function llamaInstance(gpu: GpuChoice): Promise<Llama> {
  let instance = instances.get(gpu);
  if (!instance) {
    instance = load(gpu);
    instances.set(gpu, instance);
    instance.catch(() => instances.delete(gpu));
  }
  return instance;
}

async function load(gpu: GpuChoice): Promise<Llama> {
  const { getLlama } = await import("node-llama-cpp");
  try {
    const llama = await getLlama({
      gpu: gpu === "cpu" ? false : gpu,
      build: "never",
      skipDownload: true,
      progressLogs: false,
      logLevel: "warn" as LlamaLogLevel,
      logger: (level, message) => {
        const text = message.trim();
        if (!text) return;
        if (level === "error" || level === "fatal") log.error(text);
        else if (level === "warn") log.warn(text);
        else log.debug(text);
      },
    });
    log.info("llama.cpp loaded", { gpu: llama.gpu, requested: gpu, cpuMathCores: llama.cpuMathCores });
    return llama;
  } catch (cause) {
    throw new RuntimeError(`cannot load llama.cpp with gpu=${gpu}: ${errorMessage(cause)}`, {
      hint: gpu === "auto" ? "reinstall Infernet" : "use --gpu auto (or INFERNET_GPU=auto) to fall back to the CPU",
      cause,
    });
  }
}

/** Which backend an instance actually runs on: "cuda", "vulkan", "metal" or "cpu". */
export function backendOf(llama: Llama): string {
  return llama.gpu === false ? "cpu" : llama.gpu;
}
