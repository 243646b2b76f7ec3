import type { Shard, ShardPayload } from "../../jobs/records.ts";
import type { JobRecord } from "../../jobs/rows.ts";
import { shardFromWire, shardToWire } from "../../jobs/shard-codec.ts";
import { type CanaryPool, canaryCount, type Mix, mixCanaries, recordShape } from "../../jobs/verify/canaries.ts";
import { payloadCount, pickPayload, pickResult, resultCount } from "../../jobs/verify/records.ts";
import { TRUST_STREAK } from "../../reputation/score.ts";
import type { ReputationStore } from "../../reputation/store.ts";
import { errorMessage } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import { decode, encode } from "../wire.ts";
import { resultFromBytes } from "./results.ts";
import type { Settlement } from "./settle.ts";
import type { AggregatorStore } from "./store.ts";
import type { TrustInit } from "./trust.ts";

/**
 * Where canaries come from and how they go out (the rules are jobs/verify/canaries.ts): before a
 * job's first leases, a few of its own records computed on this node's engine when the pool for its
 * model and record shape is short; after, records of shards that providers with a long verified
 * streak agreed on. Each copy is sent with canaries from the pool mixed in.
 */
const log = logger("aggregator:canaries");

/** Records of a new job computed here as canaries, when the pool for its model and shape is short. */
export const CANARY_SEED_RECORDS = 16;
/** The pool is topped up while it holds fewer than this many answers for a model and shape. */
export const CANARY_POOL_TARGET = 64;
/** A shard verified by trusted providers gives the pool this many of its records. */
export const AGREEMENT_CANARIES = 1;

export interface CanarySupplyInit {
  store: AggregatorStore;
  canaries: CanaryPool;
  reputation: ReputationStore;
  reference: TrustInit["reference"];
  random: () => number;
}

export class CanarySupply {
  private readonly seeding = new Map<string, Promise<void>>();

  constructor(private readonly init: CanarySupplyInit) {}

  /** The record shape of a job's shards (what its canaries must look like), read once. */
  shapeOf(job: JobRecord): string {
    let shape = this.shapes.get(job.id);
    if (shape === undefined) {
      const first = this.init.store.jobs.shards(job.id)[0];
      shape = first ? recordShape(shardFromWire(decode(this.init.store.shardInput(first.id))).payload) : "";
      this.shapes.set(job.id, shape);
    }
    return shape;
  }

  private readonly shapes = new Map<string, string>();

  /**
   * Before a job's first leases: when the canary pool for its model and record shape is short and
   * this node has the model, a few of the job's own records are computed here as known answers.
   * Resolves when done (or at once); a failure only means fewer canaries.
   */
  prepareJob(job: JobRecord, signal: AbortSignal): Promise<void> {
    const known = this.seeding.get(job.id);
    if (known) return known;
    const run = this.seed(job, signal).catch((err: unknown) =>
      log.info("no canaries computed here", { job: job.id, err: errorMessage(err) }),
    );
    this.seeding.set(job.id, run);
    return run;
  }

  /** Whether `prepareJob` has finished for this job (the planner leases none of its copies before). */
  ready(jobId: string): boolean {
    return this.seeded.has(jobId);
  }

  private readonly seeded = new Set<string>();

  private async seed(job: JobRecord, signal: AbortSignal): Promise<void> {
    try {
      const reference = this.init.reference;
      if (!reference) return;
      const { store } = this.init;
      const shards = store.jobs.shards(job.id);
      const first = shards[0];
      if (!first) return;
      const sample = shardFromWire(decode(store.shardInput(first.id)));
      const shape = recordShape(sample.payload);
      if (this.init.canaries.size(job.spec.model.sha256, shape) >= CANARY_POOL_TARGET) return;
      // A few records from shards across the job (greedy prompts only: sampled text has no one answer).
      const picks: ShardPayload[] = [];
      for (let i = 0; i < CANARY_SEED_RECORDS; i++) {
        const s = shards[Math.floor(this.init.random() * shards.length)] as (typeof shards)[number];
        const payload = shardFromWire(decode(store.shardInput(s.id))).payload;
        const at = Math.floor(this.init.random() * payloadCount(payload));
        const one = pickPayload(payload, [at]);
        if (one.kind === "prompts" && (one.prompts[0]?.temperature ?? 0) > 0) continue;
        if (recordShape(one) === shape) picks.push(one);
      }
      for (const record of picks) {
        if (signal.aborted) return;
        const result = await reference(job.spec.model, { index: 0, start: 0, count: 1, payload: record }, signal);
        if (result && resultCount(result) === 1) this.init.canaries.add(job.spec.model.sha256, record, result, "self");
      }
      log.info("canaries computed here", { job: job.id, records: picks.length });
    } finally {
      this.seeded.add(job.id);
    }
  }

  /** The shard as this copy is sent: with canaries from the pool mixed in. */
  mix(job: JobRecord, shard: Shard): { shard: Shard; mix: Mix } {
    const shape = recordShape(shard.payload);
    const count = canaryCount(shard.count);
    // A canary that is one of the shard's own records would show up twice: a tell. Drawn with spares.
    const own = new Set(Array.from({ length: shard.count }, (_, i) => recordKey(pickPayload(shard.payload, [i]))));
    const drawn = this.init.canaries
      .draw(job.spec.model.sha256, shape, 2 * count)
      .filter((c) => !own.has(recordKey(c.record)))
      .slice(0, count);
    return mixCanaries(anonymous(shard), drawn, this.init.random);
  }

  /** Shards that trusted providers agree on feed the canary pool (no engine here needed). */
  learn(job: JobRecord, settlement: Settlement & { outcome: "verified" }): void {
    if (settlement.voters < 2) return;
    const model = job.spec.model.sha256;
    const trusted = settlement.accepted.every(
      (c) => this.init.reputation.stats(c.provider, model).streak >= TRUST_STREAK,
    );
    if (!trusted) return;
    const { store } = this.init;
    const stored = store.jobs.result(settlement.accepted[0]?.id as string);
    if (!stored || !("bytes" in stored)) return;
    const input = shardFromWire(decode(store.shardInput(settlement.shard.id))).payload;
    const result = resultFromBytes(stored.bytes, []);
    for (let i = 0; i < AGREEMENT_CANARIES; i++) {
      const at = Math.floor(this.init.random() * payloadCount(input));
      const record = pickPayload(input, [at]);
      if (record.kind === "prompts" && (record.prompts[0]?.temperature ?? 0) > 0) continue;
      this.init.canaries.add(model, record, pickResult(result, [at]), "agreement");
    }
  }
}

/**
 * The shard without its image file names: a provider needs only the pixels, and a canary has no
 * name from the job's folder, so names would tell canaries apart.
 */
function anonymous(shard: Shard): Shard {
  if (shard.payload.kind !== "images" || !shard.payload.names) return shard;
  const { names: _names, ...payload } = shard.payload;
  return { ...shard, payload };
}

/** A record's identity: the digest of its encoding. */
function recordKey(record: ShardPayload): string {
  return new Bun.CryptoHasher("sha256")
    .update(encode(shardToWire({ index: 0, start: 0, count: 1, payload: record })))
    .digest("hex");
}
