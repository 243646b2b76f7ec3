import { stat } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import type { Llama, LlamaContext, LlamaEmbeddingContext, LlamaGrammar, LlamaModel, Token } from "node-llama-cpp";
import type { GpuChoice } from "../../config/index.ts";
import { abortReason } from "../../util/abort.ts";
import { errorMessage, IntegrityError, InvalidInputError, RuntimeError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import {
  type EmbedRequest,
  type Engine,
  type FinishReason,
  type GenerateRequest,
  type InferenceEvent,
  type InferenceRequest,
  type LocalModel,
  MAX_SCHEMA_CHARS,
  type OutputFormat,
  type RunOptions,
} from "../engine.ts";
import { type CalibrationStore, calibrateThreads } from "./calibrate.ts";
import { tokenLogprobs } from "./logprobs.ts";
import { backendOf, llamaInstance } from "./native.ts";
import { type Lease, ModelPool } from "./pool.ts";
import { type CompletionScore, chatHistoryItems, type ScoreRequest, scoreCompletion } from "./score.ts";
import { ChunkQueue } from "./stream.ts";

const log = logger("runtime:llama");

/** Longest prompt accepted, in characters, before tokenising (the context limit applies after). */
export const MAX_PROMPT_CHARS = 1_000_000;
/** Most tokens a resumed generation may carry over. */
export const MAX_RESUME_TOKENS = 131_072;
/** Most stop strings per request, and longest stop string. */
export const MAX_STOP_STRINGS = 16;
export const MAX_STOP_STRING_CHARS = 256;

export interface LlamaEngineOptions {
  /** Backend choice; "auto" falls back to CPU. Default "auto". */
  gpu?: GpuChoice;
  /** Fixed thread count; 0 (default) calibrates per model and machine. */
  threads?: number;
  /** Context window in tokens, capped at the model's training context. Default 4096. */
  contextSize?: number;
  /** Tokens generated when a request does not say. Default 256. */
  defaultMaxTokens?: number;
  /** Memory budget for loaded models, bytes. Default half of RAM. */
  maxLoadedBytes?: number;
  /** Where thread calibrations are remembered; without one, calibration runs once per process. */
  calibrations?: CalibrationStore;
  /** Fingerprint of this machine, part of the calibration key. */
  machine?: string;
}

interface Loaded {
  model: LlamaModel;
  context: LlamaContext;
  threads: number;
  /** Made on the first embedding request, kept while the model is loaded. */
  embedding?: Promise<LlamaEmbeddingContext>;
}

export interface LlamaEngine extends Engine {
  /** Backend in use ("cpu", "cuda", ...), known after the first load. */
  backend(): Promise<string>;
  /** Threads chosen for a model (calibrating if needed). */
  threadsFor(model: LocalModel, signal?: AbortSignal): Promise<number>;
  /** Paths of loaded models, least recently used first. */
  loadedModels(): string[];
  /**
   * Re-scores a completion another runtime returned: prompt + output through the model in one pass,
   * on the same context as generation and queued behind it. Judge it with `jobs/verify/text.ts`.
   */
  score(model: LocalModel, request: ScoreRequest, signal?: AbortSignal): Promise<CompletionScore>;
}

export function createLlamaEngine(options: LlamaEngineOptions = {}): LlamaEngine {
  const gpu = options.gpu ?? "auto";
  const contextSize = options.contextSize ?? 4096;
  const defaultMaxTokens = options.defaultMaxTokens ?? 256;
  const machine = options.machine ?? "unknown";
  const memoryCalibrations = new Map<string, number>();
  const models = new Map<string, LocalModel>();

  const llama = (): Promise<Llama> => llamaInstance(gpu);

  const chooseThreads = async (model: LocalModel, native: LlamaModel, signal?: AbortSignal): Promise<number> => {
    if (options.threads && options.threads > 0) return options.threads;
    const instance = await llama();
    const key = { model: model.sha256 ?? `file:${model.path}`, machine, gpu: backendOf(instance) };
    const memoKey = JSON.stringify(key);
    const known = memoryCalibrations.get(memoKey) ?? options.calibrations?.get(key)?.threads;
    if (known) {
      memoryCalibrations.set(memoKey, known);
      return known;
    }
    const result = await calibrateThreads(native, Math.max(1, availableParallelism()), signal);
    options.calibrations?.put(key, result);
    memoryCalibrations.set(memoKey, result.threads);
    return result.threads;
  };

  const pool = new ModelPool<Loaded>({
    budgetBytes: options.maxLoadedBytes ?? Math.floor(totalmem() / 2),
    async load(path, signal) {
      const model = models.get(path);
      if (!model) throw new Error(`no model registered for ${path}`);
      const instance = await llama();
      let native: LlamaModel;
      try {
        native = await instance.loadModel({ modelPath: path, gpuLayers: "auto" });
      } catch (cause) {
        throw new IntegrityError(`cannot load ${model.name} (${path}) as a GGUF model: ${errorMessage(cause)}`, {
          hint: "the file is corrupt or not a GGUF model; delete it and pull it again",
          cause,
        });
      }
      try {
        const threads = await chooseThreads(model, native, signal);
        const context = await native.createContext({
          contextSize: Math.min(contextSize, native.trainContextSize),
          threads: { ideal: threads, min: threads },
          sequences: 1,
        });
        log.info("model loaded", { path, bytes: native.size, threads, contextSize: context.contextSize });
        return { value: { model: native, context, threads }, bytes: native.size };
      } catch (cause) {
        await native.dispose();
        throw cause;
      }
    },
    async unload(loaded) {
      await (await loaded.embedding?.catch(() => undefined))?.dispose();
      await loaded.context.dispose();
      await loaded.model.dispose();
    },
  });

  const acquire = async (model: LocalModel, signal?: AbortSignal): Promise<Lease<Loaded>> => {
    if (model.runtime !== "llama") {
      throw new InvalidInputError(`${model.name} is an ${model.runtime} model, not a llama.cpp (GGUF) model`);
    }
    try {
      await stat(model.path);
    } catch (cause) {
      throw new RuntimeError(`model file ${model.path} is missing`, { cause });
    }
    models.set(model.path, model);
    return pool.acquire(model.path, signal);
  };

  return {
    runtime: "llama",

    async *run(
      model: LocalModel,
      request: InferenceRequest,
      runOptions: RunOptions = {},
    ): AsyncGenerator<InferenceEvent> {
      if (request.kind === "tensor") {
        throw new InvalidInputError(`${model.name} generates text; it does not take tensor input`);
      }
      const started = performance.now();
      const { signal } = runOptions;
      if (request.kind === "embed") {
        using lease = await acquire(model, signal);
        yield* embed(lease.value, model, request, started, signal);
        return;
      }
      validate(request);
      try {
        using lease = await acquire(model, signal);
        yield* generate(lease.value, model, request, { started, defaultMaxTokens, ...(signal ? { signal } : {}) });
      } catch (err) {
        // Whatever the native side threw while stopping, a cancelled or expired request says so.
        if (signal?.aborted) throw abortReason(signal);
        throw err;
      }
    },

    async preload(model: LocalModel, runOptions: RunOptions = {}): Promise<void> {
      using _lease = await acquire(model, runOptions.signal);
    },

    async backend(): Promise<string> {
      return backendOf(await llama());
    },

    async threadsFor(model: LocalModel, signal?: AbortSignal): Promise<number> {
      using lease = await acquire(model, signal);
      return lease.value.threads;
    },

    loadedModels: () => pool.loadedKeys(),

    async score(model: LocalModel, request: ScoreRequest, signal?: AbortSignal): Promise<CompletionScore> {
      validate({ kind: "generate", ...request });
      if (request.output.length > MAX_PROMPT_CHARS) {
        throw new InvalidInputError(
          `the output is ${request.output.length} characters; the limit is ${MAX_PROMPT_CHARS}`,
        );
      }
      try {
        using lease = await acquire(model, signal);
        return await scoreCompletion(lease.value, model, request, { defaultMaxTokens, ...(signal ? { signal } : {}) });
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        throw err;
      }
    },

    dispose: () => pool.clear(),
    [Symbol.asyncDispose]: () => pool.clear(),
  };
}

function validate(request: GenerateRequest): void {
  if (request.prompt.trim() === "") {
    throw new InvalidInputError("the prompt is empty", { hint: 'give some text to continue, e.g. "Once upon a time"' });
  }
  if (request.prompt.length > MAX_PROMPT_CHARS) {
    throw new InvalidInputError(`the prompt is ${request.prompt.length} characters; the limit is ${MAX_PROMPT_CHARS}`);
  }
  const stop = request.stop ?? [];
  if (stop.length > MAX_STOP_STRINGS || stop.some((s) => s.length === 0 || s.length > MAX_STOP_STRING_CHARS)) {
    throw new InvalidInputError(
      `stop strings: at most ${MAX_STOP_STRINGS}, each 1 to ${MAX_STOP_STRING_CHARS} characters`,
    );
  }
  if (request.maxTokens !== undefined && (!Number.isInteger(request.maxTokens) || request.maxTokens < 1)) {
    throw new InvalidInputError(`max tokens must be a positive whole number, got ${request.maxTokens}`);
  }
  const historyChars = (request.history ?? []).reduce((n, m) => n + m.content.length, 0);
  if (request.prompt.length + historyChars > MAX_PROMPT_CHARS) {
    throw new InvalidInputError(`the conversation is over ${MAX_PROMPT_CHARS} characters`);
  }
  if (request.resume) {
    const { tokens } = request.resume;
    if (tokens.length > MAX_RESUME_TOKENS || !tokens.every((t) => Number.isInteger(t) && t >= 0)) {
      throw new InvalidInputError(`resume tokens: at most ${MAX_RESUME_TOKENS} non-negative token ids`);
    }
  }
  if (request.temperature !== undefined && !(request.temperature >= 0 && request.temperature <= 10)) {
    throw new InvalidInputError(`temperature must be from 0 to 10, got ${request.temperature}`);
  }
}

/** Token ids at or above this are not in the model's vocabulary (llama.cpp must never see one). */
function vocabularySize(model: LlamaModel): number {
  const tokens: unknown = model.fileInfo.metadata.tokenizer?.ggml?.tokens;
  return Array.isArray(tokens) ? tokens.length : 0;
}

interface GenerateContext {
  started: number;
  defaultMaxTokens: number;
  signal?: AbortSignal;
}

async function* generate(
  loaded: Loaded,
  model: LocalModel,
  request: GenerateRequest,
  ctx: GenerateContext,
): AsyncGenerator<InferenceEvent> {
  const { LlamaChatSession, LlamaCompletion } = await import("node-llama-cpp");
  const chat = request.chat ?? model.chat ?? false;
  const resumeTokens = request.resume?.tokens ?? [];
  const vocabulary = vocabularySize(loaded.model);
  if (resumeTokens.some((t) => t >= vocabulary)) {
    throw new InvalidInputError(`resume tokens: a token id is outside ${model.name}'s vocabulary`);
  }
  const history = request.history ?? [];
  if (history.length && !chat) throw new InvalidInputError("earlier chat turns need a chat prompt (chat: true)");
  const promptTokens =
    [request.prompt, ...history.map((m) => m.content)].reduce((n, t) => n + loaded.model.tokenize(t, false).length, 0) +
    resumeTokens.length;
  const room = loaded.context.contextSize - promptTokens - 1;
  if (room < 1) {
    throw new InvalidInputError(
      `the prompt is ${promptTokens} tokens; ${model.name} runs with a context of ${loaded.context.contextSize}`,
      { hint: "shorten the prompt" },
    );
  }
  const maxTokens = Math.min(request.maxTokens ?? ctx.defaultMaxTokens, room);
  if (request.format && request.resume) {
    // A grammar starts at the start of the output: it cannot pick up another runtime's half.
    throw new InvalidInputError("a generation constrained to JSON cannot be resumed");
  }
  const grammar = request.format ? await grammarFor(loaded.model, request.format) : undefined;

  const stopper = new AbortController();
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, stopper.signal]) : stopper.signal;
  const queue = new ChunkQueue<{ text: string; tokens: number[] }>();
  // node-llama-cpp reports each step's token ids, then their text; pair them so every event says
  // exactly which tokens produced its text (ids withheld from the text, e.g. half a UTF-8 character
  // or a possible stop string, travel with the text they finally produce).
  let pending: number[] = [];
  let resumedFirstChunk = false;
  let outputTokens = 0;
  let firstOutputMs = 0;
  const computeStart = performance.now();

  const sampling = {
    maxTokens,
    temperature: request.temperature ?? 0,
    ...(request.topK !== undefined ? { topK: request.topK } : {}),
    ...(request.topP !== undefined ? { topP: request.topP } : {}),
    ...(request.seed !== undefined ? { seed: request.seed } : {}),
    ...(request.stop?.length ? { customStopTriggers: request.stop } : {}),
    ...(grammar ? { grammar } : {}),
    signal,
    stopOnAbortSignal: true,
    onTextChunk: (chunk: string) => {
      if (!chunk) return;
      // node-llama-cpp decodes each chunk in the context of this run's output only; on a resumed run
      // the first chunk would lose the leading space the carried-over tokens give it.
      const text =
        resumeTokens.length && !resumedFirstChunk
          ? loaded.model.detokenize(pending as Token[], false, resumeTokens as Token[])
          : chunk;
      resumedFirstChunk = true;
      queue.push({ text, tokens: pending });
      pending = [];
    },
    onToken: (tokens: readonly number[]) => {
      if (outputTokens === 0) firstOutputMs = performance.now() - ctx.started;
      outputTokens += tokens.length;
      pending.push(...tokens);
    },
  };

  const sequence = loaded.context.getSequence();
  let stopReason: string | undefined;
  let inputMeter = 0;
  const done = (async () => {
    if (chat) {
      const session = new LlamaChatSession({
        contextSequence: sequence,
        autoDisposeSequence: false,
        ...(request.system ? { systemPrompt: request.system } : {}),
      });
      try {
        if (history.length) {
          // The system prompt the session made, then the earlier turns as the template renders them.
          session.setChatHistory([...session.getChatHistory(), ...chatHistoryItems(history)]);
        }
        // Chat templates render text, so a chat generation resumes from its text so far.
        const prefix = request.resume?.text ? { responsePrefix: request.resume.text } : {};
        stopReason = (await session.promptWithMeta(request.prompt, { ...sampling, ...prefix })).stopReason;
      } finally {
        session.dispose({ disposeSequence: false });
      }
    } else {
      const completion = new LlamaCompletion({ contextSequence: sequence });
      // Token ids, not text, so a resumed generation reads exactly what the first runtime read and wrote.
      const input = resumeTokens.length
        ? [...loaded.model.tokenize(request.prompt, false, "trimLeadingSpace"), ...(resumeTokens as Token[])]
        : request.prompt;
      stopReason = (await completion.generateCompletionWithMeta(input, sampling)).metadata.stopReason;
    }
  })().then(
    () => queue.end(),
    (err) => queue.fail(err),
  );

  const generatedTokens: number[] = [...resumeTokens];
  try {
    for await (const chunk of queue.drain()) {
      generatedTokens.push(...chunk.tokens);
      yield { type: "token", ...chunk };
    }
  } catch (cause) {
    throw new RuntimeError(`generation failed on ${model.name}: ${errorMessage(cause)}`, { cause });
  } finally {
    inputMeter = sequence.tokenMeter.usedInputTokens;
    // Reached early when the consumer stops reading: stop the native loop before freeing the sequence.
    stopper.abort();
    await done;
    sequence.dispose();
  }
  if (ctx.signal?.aborted) throw abortReason(ctx.signal);

  if (request.logprobs !== undefined) {
    // Read after the generation, on the same context: every token the caller received, resumed ones too.
    const tokens = await tokenLogprobs(loaded, request, chat, generatedTokens, request.logprobs, ctx.signal);
    yield { type: "logprobs", tokens };
  }
  const finishReason: FinishReason =
    stopReason === "maxTokens" ? "length" : stopReason === "abort" ? "aborted" : "stop";
  yield {
    type: "done",
    finishReason,
    usage: {
      // The sequence's meter counts what the model actually read, chat template included.
      inputTokens: Math.max(promptTokens, inputMeter),
      outputTokens,
      computeMs: performance.now() - computeStart,
      firstOutputMs,
    },
  };
}

/**
 * Embeddings of each input in turn, on the model's embedding context (llama.cpp pools the last layer
 * as the model's metadata says): one float32 [inputs, dimensions] tensor named `embeddings`.
 */
async function* embed(
  loaded: Loaded,
  model: LocalModel,
  request: EmbedRequest,
  started: number,
  signal?: AbortSignal,
): AsyncGenerator<InferenceEvent> {
  if (request.inputs.length === 0 || request.inputs.some((t) => t.trim() === "")) {
    throw new InvalidInputError("every input to embed must hold some text");
  }
  loaded.embedding ??= loaded.model.createEmbeddingContext({
    contextSize: Math.min(loaded.context.contextSize, loaded.model.trainContextSize),
    threads: loaded.threads,
  });
  const context = await loaded.embedding;
  const computeStart = performance.now();
  const dimensions = loaded.model.embeddingVectorSize;
  const data = new Float32Array(request.inputs.length * dimensions);
  let inputTokens = 0;
  for (const [i, text] of request.inputs.entries()) {
    if (signal?.aborted) throw abortReason(signal);
    const length = context.calculateInputLength(text);
    if (length > loaded.context.contextSize) {
      throw new InvalidInputError(
        `input ${i} is ${length} tokens; ${model.name} embeds at most ${loaded.context.contextSize} at once`,
      );
    }
    inputTokens += length;
    data.set((await context.getEmbeddingFor(text)).vector, i * dimensions);
  }
  const computeMs = performance.now() - computeStart;
  yield {
    type: "tensors",
    outputs: { embeddings: { type: "float32", dims: [request.inputs.length, dimensions], data } },
  };
  yield {
    type: "done",
    finishReason: "stop",
    usage: { inputTokens, outputTokens: request.inputs.length, computeMs, firstOutputMs: performance.now() - started },
  };
}

/** The grammar for an output format; a schema node-llama-cpp cannot turn into one is the caller's error. */
async function grammarFor(model: LlamaModel, format: OutputFormat): Promise<LlamaGrammar> {
  if (JSON.stringify(format).length > MAX_SCHEMA_CHARS) {
    throw new InvalidInputError(`the JSON schema is over ${MAX_SCHEMA_CHARS} characters`);
  }
  try {
    if (format.type === "json_object") return await model.llama.getGrammarFor("json");
    return await model.llama.createGrammarForJsonSchema(format.schema as never);
  } catch (cause) {
    throw new InvalidInputError(`the JSON schema cannot be used: ${errorMessage(cause)}`, {
      hint: "node-llama-cpp supports a subset of JSON Schema (types, properties, required, enum, const, items, anyOf)",
      cause,
    });
  }
}
