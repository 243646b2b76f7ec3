import type { Config } from "../../config/index.ts";
import type { PromptRecord, Shard, ShardResult } from "../../jobs/records.ts";
import { judgeCompletion, type TextJudgement } from "../../jobs/verify/text.ts";
import { findModelBySha, modelFile } from "../../models/catalog.ts";
import { type ResolvedModel, resolveLocalModel } from "../../models/local.ts";
import type { Engine, RuntimeName } from "../../runtime/engine.ts";
import type { LlamaEngine } from "../../runtime/llama/engine.ts";
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
    const local = await this.local(model, signal);
    if (!local) return undefined;
    for await (const event of runLocalShard(this.init.self, local.model, local.engines, shard, { signal })) {
      if (event.type === "done") return event.result;
    }
    return undefined;
  }

  /** Texts re-scored on this node's llama engine and judged (jobs/verify/text.ts); undefined when it cannot. */
  async rescore(
    model: ModelRef,
    items: { record: PromptRecord; output: string }[],
    signal: AbortSignal,
  ): Promise<TextJudgement[] | undefined> {
    const local = await this.local(model, signal);
    const llama = local?.engines.llama;
    if (!local || !llama || !("score" in llama)) return undefined;
    const out: TextJudgement[] = [];
    for (const { record, output } of items) {
      const score = await (llama as LlamaEngine).score(local.model, { ...record, output }, signal);
      out.push(judgeCompletion(score, record));
    }
    return out;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const engines = await this.engines?.catch(() => undefined);
    for (const e of Object.values(engines ?? {})) await e.dispose();
  }

  /** The model and engines to run it with: the node's own when it serves it, else fetched here. */
  private async local(
    model: ModelRef,
    signal: AbortSignal,
  ): Promise<{ model: ResolvedModel; engines: Partial<Record<RuntimeName, Engine>> } | undefined> {
    const own = this.init.served(model.sha256);
    if (own) return own;
    const fetched = await this.fetched(model.sha256, signal);
    return fetched ? { model: fetched, engines: await this.ownEngines(signal) } : undefined;
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
