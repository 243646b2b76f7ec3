import { peerIdFromString } from "@libp2p/peer-id";
import type { Shard, ShardResult } from "../../jobs/records.ts";
import type { InfernetNode } from "../node.ts";
import type { CapabilityRecord } from "../protocols/capability/messages.ts";
import type { ModelRef } from "../protocols/infer/index.ts";
import type { RunShardOptions, ShardBatchEvent, ShardEvent } from "../protocols/shard/index.ts";
import { References } from "./reference.ts";
import type { Rescorer } from "./text-review.ts";

/** Lookups of a model's providers are cut off after this long (what is found by then is used). */
export const PROVIDER_LOOKUP_TIMEOUT_MS = 5_000;

/** What the aggregator needs from its node: who it is, who serves a model, and running a shard on a peer. */
export interface AggregatorNetwork {
  readonly self: string;
  /** A network lookup (DHT + record fetch), bounded by `PROVIDER_LOOKUP_TIMEOUT_MS`. */
  findProviders(sha256: string, signal?: AbortSignal): Promise<CapabilityRecord[]>;
  /** Providers known now (valid records in the directory, and this node if it serves the model), without the network. */
  knownProviders(sha256: string): CapabilityRecord[];
  runShard(peer: string, model: ModelRef, shard: Shard, options: RunShardOptions): AsyncIterable<ShardEvent>;
  /**
   * Runs a shard on this node's own engine (canaries and references computed here), when it has
   * or can get the model; undefined when it cannot.
   */
  reference?(model: ModelRef, shard: Shard, signal: AbortSignal): Promise<ShardResult | undefined>;
  /** Re-scores texts on this node's own llama engine (text-review.ts); undefined when it cannot. */
  rescore?: Rescorer;
  /** Releases what the network view holds (the reference engines). */
  close?(): Promise<void>;
  /** Several shards on one stream (tiny shards), events named by shard index. */
  runShards(peer: string, model: ModelRef, shards: Shard[], options: RunShardOptions): AsyncIterable<BatchEvent>;
}

/** An event of a batch call: `shard` is the shard's index in its job. */
export type BatchEvent = ShardBatchEvent;

/**
 * The aggregator's view of its node. When the node also serves a job's model it is one of the
 * providers (its own record included), and its copies run on its own engines (local-shard.ts).
 */
export function nodeNetwork(node: InfernetNode): AggregatorNetwork {
  const own = (sha256: string) => {
    const record = node.capability.current();
    return record && node.serves(sha256) ? [record] : [];
  };
  const references = new References({
    config: node.config,
    store: node.store,
    self: node.peerId,
    served: (sha256) => {
      const model = node.serving.find((m) => m.sha256 === sha256);
      return model && node.engines ? { model, engines: node.engines } : undefined;
    },
  });
  return {
    self: node.peerId,
    reference: (model, shard, signal) => references.run(model, shard, signal),
    rescore: (model, items, signal) => references.rescore(model, items, signal),
    close: () => references[Symbol.asyncDispose](),
    findProviders: (sha256, signal) =>
      node.capability.findProviders(sha256, {
        timeoutMs: PROVIDER_LOOKUP_TIMEOUT_MS,
        ...(signal ? { signal } : {}),
      }),
    knownProviders: (sha256) => [
      ...own(sha256),
      ...node.capability.directory.providersOf(sha256).filter((r) => r.peerId !== node.peerId),
    ],
    runShards(peer, model, shards, options) {
      return peer === node.peerId
        ? shardsInTurn(this.runShard, peer, model, shards, options)
        : node.host.services.shard.runShards(
            peerIdFromString(peer),
            { name: model.name, sha256: model.sha256 },
            shards,
            options,
          );
    },
    runShard: (peer, model, shard, options) =>
      peer === node.peerId
        ? node.runShardHere(model.sha256, shard, options)
        : node.host.services.shard.runShard(
            peerIdFromString(peer),
            { name: model.name, sha256: model.sha256 },
            shard,
            options,
          ),
  };
}

/**
 * A batch run one shard after another with `runShard` (this node's own engines, or a test's
 * simulated provider): the same events a batch stream gives.
 */
export async function* shardsInTurn(
  runShard: AggregatorNetwork["runShard"],
  peer: string,
  model: ModelRef,
  shards: Shard[],
  options: RunShardOptions,
): AsyncGenerator<BatchEvent> {
  for (const shard of shards) {
    for await (const event of runShard(peer, model, shard, options)) yield { ...event, shard: shard.index };
  }
}
