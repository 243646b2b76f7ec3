import type { LlamaModel } from "node-llama-cpp";
import { logger } from "../../util/logger.ts";

/**
 * Chooses llama.cpp's thread count by measurement. Core count is a bad guide: on a 2-core machine a
 * 260K-parameter model runs ~20x faster on one thread than on two (ggml's per-token thread sync costs
 * more than the maths), while multi-billion-parameter models gain from every core. So each model is
 * measured once per machine and backend, and the answer is remembered.
 */
const log = logger("runtime:llama:calibrate");

/** Tokens generated per candidate thread count (fewer if the time cap is hit first). */
export const CALIBRATION_TOKENS = 48;
/** Wall-clock cap per candidate, so calibrating a large model on a slow CPU stays short. */
export const CALIBRATION_MAX_MS_PER_CANDIDATE = 4_000;
/** Stop trying more threads once a candidate is this much slower than the best so far. */
const GIVE_UP_RATIO = 0.8;
const CALIBRATION_PROMPT = "Once upon a time";
const CALIBRATION_CONTEXT = 256;

export interface CalibrationResult {
  threads: number;
  tokensPerSecond: number;
  /** Every candidate measured, for the record. */
  results: { threads: number; tokensPerSecond: number }[];
}

export interface CalibrationKey {
  /** sha256 of the model file (or a stand-in for files given by path). */
  model: string;
  /** Fingerprint of this machine's hardware. */
  machine: string;
  /** Backend in use: cpu, cuda, vulkan, metal. */
  gpu: string;
}

/** Where calibrations are remembered (implemented on SQLite in store/). */
export interface CalibrationStore {
  get(key: CalibrationKey): CalibrationResult | undefined;
  put(key: CalibrationKey, result: CalibrationResult): void;
}

/** Candidate thread counts: powers of two up to `maxThreads`, and `maxThreads` itself. */
export function threadCandidates(maxThreads: number): number[] {
  const out: number[] = [];
  for (let t = 1; t < maxThreads; t *= 2) out.push(t);
  out.push(Math.max(1, maxThreads));
  return [...new Set(out)];
}

export async function calibrateThreads(
  model: LlamaModel,
  maxThreads: number,
  signal?: AbortSignal,
): Promise<CalibrationResult> {
  const { LlamaCompletion } = await import("node-llama-cpp");
  const results: CalibrationResult["results"] = [];
  let best = { threads: 1, tokensPerSecond: 0 };
  for (const threads of threadCandidates(maxThreads)) {
    signal?.throwIfAborted();
    const context = await model.createContext({
      contextSize: Math.min(CALIBRATION_CONTEXT, model.trainContextSize),
      threads: { ideal: threads, min: threads },
      sequences: 1,
    });
    try {
      const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
      // Warm up (page in the weights, allocate buffers) so the first candidate is not penalised.
      await completion.generateCompletion(CALIBRATION_PROMPT, { maxTokens: 2, temperature: 0 });
      const cap = AbortSignal.timeout(CALIBRATION_MAX_MS_PER_CANDIDATE);
      let tokens = 0;
      const start = performance.now();
      await completion.generateCompletion(CALIBRATION_PROMPT, {
        maxTokens: CALIBRATION_TOKENS,
        temperature: 0,
        signal: signal ? AbortSignal.any([signal, cap]) : cap,
        stopOnAbortSignal: true,
        onToken: (t) => {
          tokens += t.length;
        },
      });
      const seconds = (performance.now() - start) / 1000;
      const tokensPerSecond = tokens / Math.max(seconds, 1e-6);
      results.push({ threads, tokensPerSecond });
      log.debug("calibration candidate", { threads, tokens, tokensPerSecond });
      if (tokensPerSecond > best.tokensPerSecond) best = { threads, tokensPerSecond };
      else if (tokensPerSecond < best.tokensPerSecond * GIVE_UP_RATIO) break;
    } finally {
      await context.dispose();
    }
  }
  signal?.throwIfAborted();
  log.info("calibrated threads", { ...best, results });
  return { ...best, results };
}
