import { throwIfAborted } from "../../util/abort.ts";
import { InvalidInputError, RuntimeError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import type { Engine, InferenceEvent, InferenceRequest, LocalModel, RunOptions, Tensor } from "../engine.ts";
import { type OnnxSession, openSession, type SessionSettings, type Signature } from "./session.ts";
import { concatBatch, sliceBatch } from "./tensors.ts";
import { planBatches, selectOutputs } from "./validate.ts";

const log = logger("runtime:onnx");

/** Models kept loaded between requests; the least recently used one is released beyond this. */
export const MAX_CACHED_SESSIONS = 4;

/** Upper bound for the thread options, to catch nonsense values early. */
export const MAX_THREADS = 1024;

export interface OnnxEngineOptions {
  /**
   * Threads one operator may use; 0 lets onnxruntime use one per core. Default: 1 for models under
   * `SMALL_MODEL_BYTES`, 0 otherwise (see session.ts for the measurements behind that).
   */
  intraOpNumThreads?: number;
  /** Threads for independent operators; 1 (the default) runs the graph sequentially. */
  interOpNumThreads?: number;
  /** Models kept loaded at once (default `MAX_CACHED_SESSIONS`). */
  maxSessions?: number;
}

interface CachedSession {
  session: Promise<OnnxSession>;
  /** Runs in progress; an evicted session is released when the last one ends. */
  users: number;
  evicted: boolean;
}

/** The onnxruntime engine: tensor requests in, one batched `tensors` event and `done` out. */
export interface OnnxEngine extends Engine {
  /** The model's declared inputs and outputs (loading it if needed), e.g. to build inputs of the right type. */
  signature(model: LocalModel, options?: RunOptions): Promise<Signature>;
}

export function createOnnxEngine(options: OnnxEngineOptions = {}): OnnxEngine {
  return new OnnxRuntimeEngine(options);
}

class OnnxRuntimeEngine implements OnnxEngine {
  readonly runtime = "onnx" as const;
  private readonly settings: SessionSettings;
  private readonly maxSessions: number;
  /** Insertion order is recency order: a hit moves the entry to the end. */
  private readonly sessions = new Map<string, CachedSession>();
  private disposed = false;

  constructor(options: OnnxEngineOptions) {
    this.settings = {
      ...(options.intraOpNumThreads !== undefined
        ? { intraOpNumThreads: threads("intraOpNumThreads", options.intraOpNumThreads) }
        : {}),
      interOpNumThreads: threads("interOpNumThreads", options.interOpNumThreads ?? 1),
    };
    this.maxSessions = options.maxSessions ?? MAX_CACHED_SESSIONS;
    if (!Number.isInteger(this.maxSessions) || this.maxSessions < 1) {
      throw new RangeError(`maxSessions must be a positive whole number, got ${options.maxSessions}`);
    }
  }

  async *run(model: LocalModel, request: InferenceRequest, options: RunOptions = {}): AsyncIterable<InferenceEvent> {
    const started = performance.now();
    const { signal } = options;
    if (request.kind !== "tensor") {
      throw new InvalidInputError(`${model.name} is an ONNX model: it takes tensors, not a text prompt`);
    }
    const entry = await this.acquire(model, signal);
    try {
      const session = await entry.session;
      const plan = planBatches(model.name, session.signature, request.inputs);
      const outputs = selectOutputs(model.name, session.signature, request.outputs);
      const parts = new Map<string, Tensor[]>(outputs.map((name) => [name, []]));
      let computeMs = 0;
      let firstOutputMs: number | undefined;
      for (let start = 0; start < plan.records; start += plan.step) {
        throwIfAborted(signal);
        const feeds = plan.batched ? slice(request.inputs, start, start + plan.step) : request.inputs;
        const t0 = performance.now();
        const result = await session.run(feeds, outputs);
        const t1 = performance.now();
        computeMs += t1 - t0;
        firstOutputMs ??= t1 - started;
        for (const name of outputs) parts.get(name)?.push(result[name] as Tensor);
      }
      throwIfAborted(signal);
      const joined: Record<string, Tensor> = {};
      for (const [name, tensors] of parts) joined[name] = join(model.name, name, tensors);
      yield { type: "tensors", outputs: joined };
      yield {
        type: "done",
        usage: { inputTokens: plan.records, outputTokens: plan.records, computeMs, firstOutputMs: firstOutputMs ?? 0 },
        finishReason: "stop",
      };
    } finally {
      this.releaseUse(entry);
    }
  }

  async preload(model: LocalModel, options: RunOptions = {}): Promise<void> {
    await this.signature(model, options);
  }

  async signature(model: LocalModel, options: RunOptions = {}): Promise<Signature> {
    const entry = await this.acquire(model, options.signal);
    try {
      return (await entry.session).signature;
    } finally {
      this.releaseUse(entry);
    }
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const entries = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(
      entries.map(async (e) => {
        e.evicted = true;
        if (e.users === 0) await closeSession(e);
      }),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  /** Returns the cached session for `model` (loading it if needed), counted as in use. */
  private async acquire(model: LocalModel, signal: AbortSignal | undefined): Promise<CachedSession> {
    if (this.disposed) throw new RuntimeError("the ONNX engine has been disposed");
    if (model.runtime !== "onnx") {
      throw new RuntimeError(`${model.name} is a ${model.runtime} model; the ONNX engine cannot run it`);
    }
    throwIfAborted(signal);
    let entry = this.sessions.get(model.path);
    if (entry) {
      this.sessions.delete(model.path);
    } else {
      log.debug("loading model", { model: model.name, path: model.path, ...this.settings });
      entry = { session: openSession(model.path, this.settings, signal), users: 0, evicted: false };
    }
    this.sessions.set(model.path, entry);
    entry.users += 1;
    this.evictBeyondLimit();
    try {
      await entry.session;
    } catch (err) {
      // A failed load is not cached: the next request tries again (the file may have been fixed).
      entry.users -= 1;
      if (this.sessions.get(model.path) === entry) this.sessions.delete(model.path);
      throw err;
    }
    return entry;
  }

  private releaseUse(entry: CachedSession): void {
    entry.users -= 1;
    if (entry.evicted && entry.users === 0) void closeSession(entry);
  }

  private evictBeyondLimit(): void {
    while (this.sessions.size > this.maxSessions) {
      const [oldestPath, oldest] = this.sessions.entries().next().value as [string, CachedSession];
      this.sessions.delete(oldestPath);
      oldest.evicted = true;
      log.debug("releasing least recently used model", { path: oldestPath });
      if (oldest.users === 0) void closeSession(oldest);
    }
  }
}

async function closeSession(entry: CachedSession): Promise<void> {
  try {
    const session = await entry.session;
    await session.release();
  } catch (err) {
    log.debug("closing a session failed", { err });
  }
}

function slice(inputs: Record<string, Tensor>, start: number, end: number): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, tensor] of Object.entries(inputs)) out[name] = sliceBatch(tensor, start, end);
  return out;
}

function join(model: string, output: string, tensors: Tensor[]): Tensor {
  try {
    return concatBatch(tensors);
  } catch (cause) {
    throw new RuntimeError(`${model} output "${output}" changed shape between batches`, { cause });
  }
}

function threads(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_THREADS) {
    throw new RangeError(`${name} must be a whole number from 0 to ${MAX_THREADS}, got ${value}`);
  }
  return value;
}
