import type { Config } from "../config/index.ts";
import type { ResolvedModel } from "../models/local.ts";
import type { Engine, LocalModel, RuntimeName } from "../runtime/engine.ts";
import { tappedEngines, unitsProduced } from "../runtime/engine-tap.ts";
import { detectHardware, type HardwareInfo, machineFingerprint } from "../runtime/hardware/index.ts";
import { engineTokensBenchmark, runSelfBench } from "../runtime/hardware/self-bench.ts";
import { sqliteBenchmarkStore } from "../store/benchmarks.ts";
import type { Store } from "../store/db.ts";
import { throwIfAborted } from "../util/abort.ts";
import { UsageError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import type { RateMeter } from "./control/dash-rate.ts";
import { configuredEngines } from "./engines.ts";
import { MAX_MODELS } from "./protocols/capability/messages.ts";

/**
 * What a node serves, and what serving needs: the engines, made on the first model served (a client
 * node never loads llama.cpp), and the hardware its record describes. The set changes while the node
 * runs (the dashboard's `m`): a model joins only once it is loaded, so no request meets it half-ready,
 * and leaves at once, while the requests already running on it finish.
 */
const log = logger("node:serving");

/** The model every provider measures tokens/s on, so announced figures compare across machines. */
export const BENCH_MODEL = "stories260k";

const RUNTIMES: RuntimeName[] = ["llama", "onnx"];

export interface Benchmarks {
  memoryBandwidthGBps?: number;
  tokensPerSecond?: number;
}

export interface ServingInit {
  config: Config;
  store: Store;
  /** Engines to serve with (fixtures); default: configured from `config` when the first model is served. */
  engines?: Record<RuntimeName, Engine>;
  /** Counts what the engines produce (the dashboard's rate). */
  produced: RateMeter;
  /** Something the network should hear of changed: the served set, or a request starting or ending. */
  onChange: () => void;
}

export class Serving {
  /** Detected on the first model served, or at start for an aggregator. */
  hardware: HardwareInfo | undefined;
  /** This machine's measured figures, as its record announces them. */
  bench: Benchmarks = {};
  /**
   * The engines as the infer and shard protocols see them: each runtime's engine once they exist,
   * undefined before (the protocols then answer "model-not-served").
   */
  readonly live: Partial<Record<RuntimeName, Engine>> = {};
  private models: ResolvedModel[] = [];
  private bySha = new Map<string, LocalModel>();
  private raw: Record<RuntimeName, Engine> | undefined;
  private wrapped: Record<RuntimeName, Engine> | undefined;
  /** Changes run one at a time: two first serves must not make two sets of engines. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly init: ServingInit) {
    for (const runtime of RUNTIMES) {
      Object.defineProperty(this.live, runtime, { enumerable: true, get: () => this.wrapped?.[runtime] });
    }
  }

  /** The models served now, in the order they were added. */
  get list(): readonly ResolvedModel[] {
    return this.models;
  }

  /** The engines (unwrapped), once a model was served. */
  get engines(): Record<RuntimeName, Engine> | undefined {
    return this.raw;
  }

  /** The served set by file sha256, as the protocols read it on every request. */
  readonly served = (): Map<string, LocalModel> => this.bySha;

  /**
   * Adds models to the served set: engines made, hardware detected and measured if it never was
   * (as `infernet start` does), each model loaded, then all of them added at once. A failure or an
   * abort leaves the set as it was. Models already served (by name) are skipped; returns the others.
   */
  add(models: readonly ResolvedModel[], signal?: AbortSignal): Promise<ResolvedModel[]> {
    const run = this.queue.then(() => this.addNow(models, signal));
    this.queue = run.catch(() => {});
    return run;
  }

  /** Removes a model (by name) from the served set; a UsageError when it is not served. */
  remove(name: string): ResolvedModel {
    const model = this.models.find((m) => m.name === name);
    if (!model) {
      throw new UsageError(`${name} is not served by this node`, {
        hint: `it serves ${this.models.map((m) => m.name).join(", ") || "nothing"}`,
      });
    }
    this.set(this.models.filter((m) => m !== model));
    log.info("model no longer served", { model: name });
    return model;
  }

  /** Detects this machine and reads its measured figures once (providers and aggregators announce them). */
  async detect(signal?: AbortSignal): Promise<HardwareInfo> {
    this.hardware ??= await detectHardware(signal ? { signal } : {});
    this.bench = benchmarksOf(this.init.store, this.hardware);
    return this.hardware;
  }

  async dispose(): Promise<void> {
    await this.queue;
    if (this.raw) await Promise.all(Object.values(this.raw).map((e) => e.dispose()));
  }

  private async addNow(models: readonly ResolvedModel[], signal?: AbortSignal): Promise<ResolvedModel[]> {
    const fresh = models.filter(
      (m, i) => !this.models.some((s) => s.name === m.name) && models.findIndex((o) => o.name === m.name) === i,
    );
    if (fresh.length === 0) return [];
    if (this.models.length + fresh.length > MAX_MODELS) {
      throw new UsageError(`a node serves at most ${MAX_MODELS} models`, { hint: "stop serving one first" });
    }
    const { config, store } = this.init;
    if (!this.raw) {
      this.raw = this.init.engines ?? (await configuredEngines(config, store, signal));
      // Load changes are announced as requests start and end; what they produce feeds the rate.
      const { onChange, produced } = this.init;
      this.wrapped = tappedEngines(this.raw, {
        start: onChange,
        event: (event) => {
          const units = unitsProduced(event);
          if (units > 0) produced.add(units);
        },
        end: onChange,
      });
    }
    const hardware = await this.detect(signal);
    await selfBenchIfMissing(store, hardware, this.raw, fresh, signal);
    this.bench = benchmarksOf(store, hardware);
    // Load (and calibrate) each model now, so the first request does not pay for it.
    for (const m of fresh) await this.raw[m.runtime].preload(m, signal ? { signal } : {});
    // An engine may finish loading after its caller gave up: the model then stays out of the set.
    throwIfAborted(signal);
    this.set([...this.models, ...fresh]);
    log.info("serving", { models: fresh.map((m) => m.name) });
    return fresh;
  }

  private set(models: ResolvedModel[]): void {
    this.models = models;
    this.bySha = new Map(models.flatMap((m) => (m.sha256 ? [[m.sha256, m] as const] : [])));
    this.init.onChange();
  }
}

/**
 * A provider announces measured memory bandwidth and tokens/s; measure them once per machine if
 * `infernet gpu --bench` never has (about a second; tokens/s only when the bench model is served).
 */
async function selfBenchIfMissing(
  store: Store,
  hardware: HardwareInfo,
  engines: Record<RuntimeName, Engine>,
  serving: readonly ResolvedModel[],
  signal?: AbortSignal,
): Promise<void> {
  const machine = machineFingerprint(hardware);
  const benchmarks = sqliteBenchmarkStore(store.db);
  const have = new Set(benchmarks.list(machine).map((r) => r.unit));
  const benchModel = serving.find((m) => m.name === BENCH_MODEL);
  const tokens =
    !have.has("tokens/s") && benchModel
      ? [engineTokensBenchmark(`llama.${BENCH_MODEL}`, engines.llama, benchModel)]
      : [];
  if (have.has("GB/s") && tokens.length === 0) return;
  log.info("measuring this machine for its announcements", { memory: !have.has("GB/s"), tokens: tokens.length > 0 });
  await runSelfBench({
    ...(have.has("GB/s") ? { memory: false as const } : {}),
    tokens,
    onResult: (r) => benchmarks.put(machine, r),
    ...(signal ? { signal } : {}),
  });
}

function benchmarksOf(store: Store, hardware: HardwareInfo): Benchmarks {
  const results = sqliteBenchmarkStore(store.db).list(machineFingerprint(hardware));
  const out: Benchmarks = {};
  for (const r of results) {
    if (r.unit === "GB/s") out.memoryBandwidthGBps = r.value;
    else if (r.unit === "tokens/s") out.tokensPerSecond = r.value;
  }
  return out;
}
