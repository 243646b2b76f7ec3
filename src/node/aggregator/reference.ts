import type { Config } from "../../config/index.ts";
import type { Shard, ShardResult } from "../../jobs/records.ts";
import { findModelBySha, modelFile } from "../../models/catalog.ts";
import { type ResolvedModel, resolveLocalModel } from "../../models/local.ts";
import type { Engine, RuntimeName } from "../../runtime/engine.ts";
import type { Store } from "../../store/db.ts";
import { errorMessage } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import { configuredEngines } from "../engines.ts";
import type { ModelRef } from "../protocols/infer/index.ts";
import { runLocalShard } from "./local-shard.ts";

/**
 * The aggregator computing answers itself: canaries for a job's model (trust.ts) and, later, the
 * reference for re-checking evidence. It uses the node's own engines when the node serves the model,
 * otherwise it fetches the catalog model (through the mirror when one is set, as `infernet pull`
 * does) into engines of its own, once. Models larger than `MAX_REFERENCE_MODEL_BYTES` are not
 * fetched for this: such an aggregator relies on canaries learnt from trusted providers instead.
 */
const log = logger("aggregator:reference");

/** Largest model an aggregator downloads only to compute canaries. */
export const MAX_REFERENCE_MODEL_BYTES = 2 * 1024 ** 3;

export interface ReferenceInit {
  config: Config;
  store: Store;
  self: string;
  /** The node's own model and engines for this sha256, when it serves it. */
  served: (sha256: string) => { model: ResolvedModel; engines: Partial<Record<RuntimeName, Engine>> } | undefined;
}

export class References implements AsyncDisposable {
  private engines: Promise<Record<RuntimeName, Engine>> | undefined;
  private readonly models = new Map<string, Promise<ResolvedModel | undefined>>();

  constructor(private readonly init: ReferenceInit) {}

  /** The shard's result computed here, or undefined when this node cannot run the model. */
  async run(model: ModelRef, shard: Shard, signal: AbortSignal): Promise<ShardResult | undefined> {
    const own = this.init.served(model.sha256);
    const local =
      own ?? (await this.fetched(model.sha256, signal).then((m) => (m ? { model: m, engines: undefined } : undefined)));
    if (!local) return undefined;
    const engines = local.engines ?? (await this.ownEngines(signal));
    for await (const event of runLocalShard(this.init.self, local.model, engines, shard, { signal })) {
      if (event.type === "done") return event.result;
    }
    return undefined;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const engines = await this.engines?.catch(() => undefined);
    for (const e of Object.values(engines ?? {})) await e.dispose();
  }

  private ownEngines(signal: AbortSignal): Promise<Record<RuntimeName, Engine>> {
    this.engines ??= configuredEngines(this.init.config, this.init.store, signal);
    return this.engines;
  }

  private fetched(sha256: string, signal: AbortSignal): Promise<ResolvedModel | undefined> {
    let known = this.models.get(sha256);
    if (!known) {
      known = this.fetch(sha256, signal);
      this.models.set(sha256, known);
    }
    return known;
  }

  private async fetch(sha256: string, signal: AbortSignal): Promise<ResolvedModel | undefined> {
    const entry = findModelBySha(sha256);
    if (!entry) return undefined;
    if (modelFile(entry).size > MAX_REFERENCE_MODEL_BYTES) return undefined;
    try {
      return await resolveLocalModel(entry.name, { config: this.init.config, store: this.init.store, signal });
    } catch (err) {
      log.info("model not available here for reference answers", { model: entry.name, err: errorMessage(err) });
      this.models.delete(sha256);
      return undefined;
    }
  }
}
