import { join } from "node:path";
import type { Shard, ShardResult } from "../../src/jobs/records.ts";
import { provider } from "../../src/jobs/scheduler-fixtures.ts";
import { type AggregatorNetwork, shardsInTurn } from "../../src/node/aggregator/network.ts";
import type { CapabilityRecord } from "../../src/node/protocols/capability/messages.ts";
import type { ModelRef } from "../../src/node/protocols/infer/index.ts";
import { executeShard } from "../../src/node/protocols/shard/execute.ts";
import { RemoteShardError, type RunShardOptions, type ShardEvent } from "../../src/node/protocols/shard/index.ts";
import type { LocalModel, Tensor } from "../../src/runtime/engine.ts";
import type { OnnxEngine } from "../../src/runtime/onnx/engine.ts";
import { concatBatch } from "../../src/runtime/onnx/tensors.ts";
import { abortReason } from "../../src/util/abort.ts";
import { isChosen, rotateRows, rowBytes, type Selector } from "../fixtures/lies.ts";
import { SHARED_MODELS } from "./paths.ts";

/**
 * The aggregator's network, simulated in one process: providers are functions that run the real
 * mnist-8 on the real onnxruntime (executeShard, as a provider node does) and can be told to
 * misbehave; with `reference` the aggregator computes canaries on the same engine, as a node that
 * has the model does. The same flows over real libp2p processes are in test/aggregator.test.ts and
 * test/trust.test.ts. Used by src/node/aggregator/aggregator.test.ts and bench/trust.ts.
 */

export const MNIST_SHA = "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf";
export const MNIST_MODEL: LocalModel = {
  name: "mnist-8",
  runtime: "onnx",
  path: join(SHARED_MODELS, "mnist-8.onnx"),
  sha256: MNIST_SHA,
};

/**
 * What a simulated provider does with a shard: `ok` computes it; `bad-result` computes it and then
 * fails as a malformed answer would; `silent` never answers; `busy` refuses; `wrong` moves every
 * record's scores one class up (every digit wrong, right shape); `liar` does that to the records its
 * selector picks (lies.ts: by a hash of each record's input bytes, so a record is lied on always or
 * never, whichever shard or canary carries it).
 */
export type Behaviour = "ok" | "bad-result" | "silent" | "busy" | "wrong" | "liar";

/** A liar's default: about one record in ten. */
export const LIAR_RATE = 0.1;

/** One copy a provider returned, in the order they returned. */
export interface Returned {
  peer: string;
  /** The shard's index in its job. */
  shard: number;
  /** Records computed: the shard's own and the canaries mixed into it. */
  records: number;
  /** Records lied on (a liar's). */
  lies: number;
}

export interface SimNetworkOptions {
  /** Every provider's price (capability record), when not the fixture's default. */
  price?: number;
  /** Give the aggregator its own engine for this model (`reference`): it computes canaries. */
  reference?: boolean;
}

export class SimNetwork implements AggregatorNetwork {
  readonly self = "aggregator-peer";
  readonly behaviour = new Map<string, Behaviour>();
  readonly records: CapabilityRecord[] = [];
  /** Providers called, one entry per call. */
  readonly calls: string[] = [];
  /** Copies returned, in order. */
  readonly returned: Returned[] = [];
  /** Records each provider computed to the end (copies that returned, or failed after computing). */
  readonly computed = new Map<string, number>();
  /** Records the aggregator computed itself (`reference`: canaries, evidence). */
  referenceRecords = 0;
  /** Which records each liar lies on (its default: `LIAR_RATE`, seeded by its peer id). */
  readonly selectors = new Map<string, Selector>();
  reference?: AggregatorNetwork["reference"];

  constructor(
    private readonly onnx: OnnxEngine,
    peers: string[],
    over: SimNetworkOptions = {},
  ) {
    for (const p of peers) this.add(p, over.price);
    // An arrow function: the coordinator passes it on without its object (trust.ts).
    if (over.reference) {
      this.reference = async (_model, shard, signal) => {
        const { output } = await this.compute(this.self, shard, signal);
        this.referenceRecords += shard.count;
        return { kind: "tensor", shard: shard.index, providers: [this.self], output };
      };
    }
  }

  /** A provider joins (honest until told otherwise). */
  add(peer: string, price?: number): void {
    this.behaviour.set(peer, "ok");
    this.records.push(
      provider(peer, {
        sha256: MNIST_SHA,
        tps: 50_000,
        expiresAt: Date.now() + 3_600_000,
        ...(price ? { price } : {}),
      }),
    );
  }

  /** `peer` signs a new record (what a provider does every announcement): it is no longer suspect. */
  reannounce(peer: string): void {
    const i = this.records.findIndex((r) => r.peerId === peer);
    const record = this.records[i];
    if (record) this.records[i] = { ...record, issuedAt: Date.now(), expiresAt: Date.now() + 3_600_000 };
  }

  /** From now on `peer` lies on the records `selector` picks. */
  lie(peer: string, selector: Selector = { rate: LIAR_RATE, seed: peer }): void {
    this.selectors.set(peer, selector);
    this.behaviour.set(peer, "liar");
  }

  findProviders = async () => this.knownProviders();
  knownProviders = () => this.records.filter((r) => this.behaviour.has(r.peerId));

  runShards = (peer: string, model: ModelRef, shards: Shard[], options: RunShardOptions) =>
    shardsInTurn(this.runShard.bind(this), peer, model, shards, options);

  async *runShard(peer: string, _model: ModelRef, shard: Shard, options: RunShardOptions): AsyncGenerator<ShardEvent> {
    this.calls.push(peer);
    const behaviour = this.behaviour.get(peer) ?? "silent";
    const signal = options.signal as AbortSignal;
    options.onActivity?.();
    if (behaviour === "busy") throw new RemoteShardError("busy", peer, "busy");
    if (behaviour === "silent") {
      await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      throw abortReason(signal);
    }
    // A provider's keepalives: it is at work, however long the shard takes.
    const keepalive = setInterval(() => options.onActivity?.(), 100);
    const { output, usage } = await this.compute(peer, shard, signal).finally(() => clearInterval(keepalive));
    this.computed.set(peer, (this.computed.get(peer) ?? 0) + shard.count);
    if (behaviour === "bad-result") throw new RemoteShardError("bad-result", peer, `${peer} sent 3 records for 500`);
    // A liar with the right shape: the scores of its records moved one class up, so their digits are wrong.
    const chosen =
      behaviour === "wrong"
        ? Array.from({ length: shard.count }, () => true)
        : behaviour === "liar"
          ? chosenRecords(shard, this.selectors.get(peer) ?? { rate: LIAR_RATE, seed: peer })
          : [];
    const answer = chosen.some(Boolean) ? rotateRows(output, chosen) : output;
    // A stream reset while the last records were computed delivers nothing.
    if (signal.aborted) throw abortReason(signal);
    this.returned.push({ peer, shard: shard.index, records: shard.count, lies: chosen.filter(Boolean).length });
    yield { type: "done", result: { kind: "tensor", shard: shard.index, providers: [peer], output: answer }, usage };
  }

  /** The shard's output on the real engine, as a provider computes it. */
  private async compute(self: string, shard: Shard, signal: AbortSignal) {
    const pieces: Tensor[] = [];
    const usage = await executeShard(
      MNIST_MODEL,
      shard,
      async (_first, result) => void pieces.push((result as Extract<ShardResult, { kind: "tensor" }>).output),
      { engines: { onnx: this.onnx }, batchRecords: 100, self, signal },
    );
    return { output: concatBatch(pieces), usage };
  }
}

/** Which records of a shard a liar picks: by each record's input bytes (image pixels, or tensor row). */
function chosenRecords(shard: Shard, selector: Selector): boolean[] {
  const { payload } = shard;
  if (payload.kind === "images") return payload.images.map((image) => isChosen(selector, [image.data]));
  if (payload.kind === "tensor") {
    return Array.from({ length: shard.count }, (_, r) => isChosen(selector, [rowBytes(payload.tensor, r)]));
  }
  return payload.prompts.map(() => false);
}
