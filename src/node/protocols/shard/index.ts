import type { PeerId, Startable } from "@libp2p/interface";
import type { ConnectionManager, Registrar } from "@libp2p/interface-internal";
import type { Shard } from "../../../jobs/records.ts";
import type { Engine, LocalModel, RuntimeName } from "../../../runtime/engine.ts";
import type { ModelRef } from "../infer/index.ts";
import { ProtocolLifecycle } from "../lifecycle.ts";
import { atLeastZero, positive } from "../settings.ts";
import { DEFAULT_BATCH_RECORDS } from "./execute.ts";
import { ShardProvider } from "./provider.ts";
import { callShard, callShards, type ShardBatchEvent, type ShardCallBase, type ShardEvent } from "./requester.ts";

/**
 * /infernet/shard/1.0.0: an aggregator hands one shard of a job (or a batch of tiny ones) to a
 * provider and gets its results back, streamed in record order. See messages.ts for the frames, execute.ts for how a shard runs on
 * the engines, provider.ts for the serving side and requester.ts for the calling side.
 */
export const SHARD_PROTOCOL = "/infernet/shard/1.0.0";
/** Shards computing at once on a provider, by default (each keeps an engine busy for a while). */
export const DEFAULT_MAX_CONCURRENT = 2;
/** Shards waiting for a slot, by default; one more is refused with "busy". */
export const DEFAULT_MAX_QUEUED = 8;
/** A provider's hard cap on one shard (queueing included), by default. */
export const DEFAULT_SHARD_TIMEOUT_MS = 30 * 60_000;
/** A client's deadline when the caller gives none. */
export const DEFAULT_CLIENT_DEADLINE_MS = DEFAULT_SHARD_TIMEOUT_MS;
/** Shard streams open at once on one connection, each way. */
export const MAX_INBOUND_STREAMS = 32;
export const MAX_OUTBOUND_STREAMS = 32;

export { RemoteShardError } from "./errors.ts";
export { DEFAULT_BATCH_RECORDS } from "./execute.ts";
export {
  MAX_REQUEST_FRAME_BYTES,
  MAX_RESPONSE_FRAME_BYTES,
  MAX_SHARDS_PER_REQUEST,
  REMOTE_SHARD_ERROR_CODES,
  type RemoteShardErrorCode,
  type ShardUsage,
} from "./messages.ts";

import type { WorkView } from "../../work-log.ts";

export { CLOSE_TIMEOUT_MS, KEEPALIVE_MS, REQUEST_READ_TIMEOUT_MS } from "./provider.ts";
export type { ShardBatchEvent, ShardEvent } from "./requester.ts";

export interface ShardInit {
  /** Models this node serves, by sha256 (lowercase hex). Called per shard (the served set can change). */
  served?: () => Map<string, LocalModel>;
  /** False while serving is paused: new requests are refused with "busy", running ones finish (default: always true). */
  accepting?: () => boolean;
  /** Engines by runtime. Absent = this node runs no shards (an aggregator that only hands them out). */
  engines?: Partial<Record<RuntimeName, Engine>>;
  /** Shards computing at once (default `DEFAULT_MAX_CONCURRENT`); more wait in a bounded queue. */
  maxConcurrent?: number;
  /** Shards waiting for a slot (default `DEFAULT_MAX_QUEUED`); beyond, the reply is error "busy". */
  maxQueued?: number;
  /** Hard cap per shard on the provider, queueing included (default `DEFAULT_SHARD_TIMEOUT_MS`). */
  shardTimeoutMs?: number;
  /** Images or tensor rows per ONNX call, and so per partial result (default `DEFAULT_BATCH_RECORDS`). */
  batchRecords?: number;
}

export interface ShardComponents {
  registrar: Registrar;
  connectionManager: ConnectionManager;
  peerId: PeerId;
}

export interface ShardLoad {
  /** Shards computing now. */
  active: number;
  /** Shards waiting for a slot. */
  queued: number;
  maxConcurrent: number;
  /** Shards run to completion (`done` sent) since the node started. */
  served: number;
  /** Shards accepted and then failed (engine error or deadline) since the node started. */
  failed: number;
}

export interface RunShardOptions {
  signal?: AbortSignal;
  /** Budget for the whole shard, dial included (default `DEFAULT_CLIENT_DEADLINE_MS`); then `TimeoutError`. */
  deadlineMs?: number;
  /** Called on every frame from the provider, keepalives included (a provider queues shards silently otherwise). */
  onActivity?: () => void;
}

export interface ShardService extends Startable {
  /**
   * Client side: runs `shard` on `peer`, yielding `partial` events (records in order, each checked
   * against the shard) and ending with `done` (the whole result, `providers: [peer]`, and usage).
   * Throws `RemoteShardError` (refused, failed, `bad-result`, or the stream ended before `done`),
   * `InvalidInputError` for a shard too large to send, `AbortedError` when `signal` aborts,
   * `TimeoutError` when the deadline passes; leaving the loop early cancels the shard on the provider.
   */
  runShard(peer: PeerId, model: ModelRef, shard: Shard, options?: RunShardOptions): AsyncIterable<ShardEvent>;
  /**
   * Client side: runs 1 to `MAX_SHARDS_PER_REQUEST` shards (distinct indices) on `peer` over one
   * stream, in one of its slots, one after the other in this order: each shard's `partial` events then
   * its `done`, checked as `runShard` checks them, each naming its shard by `index`. The deadline
   * covers the whole batch. An error ends the batch: the shards whose `done` came before it are done,
   * the rest are not. Throws as `runShard` does (`InvalidInputError` also for a batch too large, too
   * long or with an index twice).
   */
  runShards(peer: PeerId, model: ModelRef, shards: Shard[], options?: RunShardOptions): AsyncIterable<ShardBatchEvent>;
  /** Provider side load, for announcements. */
  load(): ShardLoad;
  /** Provider side: what runs now, then what finished last (newest first), at most `limit`. */
  work(limit: number): WorkView[];
}

class DefaultShardService implements ShardService {
  private readonly provider: ShardProvider;
  private readonly life: ProtocolLifecycle;

  constructor(
    private readonly components: ShardComponents,
    init: ShardInit,
  ) {
    const engines = init.engines ?? {};
    this.provider = new ShardProvider({
      served: init.served ?? (() => new Map()),
      accepting: init.accepting ?? (() => true),
      engines,
      self: components.peerId.toString(),
      maxConcurrent: positive("maxConcurrent", init.maxConcurrent ?? DEFAULT_MAX_CONCURRENT),
      maxQueued: atLeastZero("maxQueued", init.maxQueued ?? DEFAULT_MAX_QUEUED),
      shardTimeoutMs: positive("shardTimeoutMs", init.shardTimeoutMs ?? DEFAULT_SHARD_TIMEOUT_MS),
      batchRecords: positive("batchRecords", init.batchRecords ?? DEFAULT_BATCH_RECORDS),
    });
    this.life = new ProtocolLifecycle({
      registrar: components.registrar,
      protocol: SHARD_PROTOCOL,
      // A node that serves nothing does not register the handler: peers get "protocol not supported".
      server: Object.keys(engines).length > 0 ? this.provider : undefined,
      maxInboundStreams: MAX_INBOUND_STREAMS,
      maxOutboundStreams: MAX_OUTBOUND_STREAMS,
    });
  }

  readonly [Symbol.toStringTag] = "@infernet/shard";

  start(): Promise<void> {
    return this.life.start();
  }

  stop(): Promise<void> {
    return this.life.stop();
  }

  isStarted(): boolean {
    return this.life.isStarted();
  }

  runShard(peer: PeerId, model: ModelRef, shard: Shard, options: RunShardOptions = {}): AsyncIterable<ShardEvent> {
    if (this.life.stopped) return refuse(this.life.stoppedError());
    return callShard({ ...this.call(peer, model, options), shard });
  }

  runShards(
    peer: PeerId,
    model: ModelRef,
    shards: Shard[],
    options: RunShardOptions = {},
  ): AsyncIterable<ShardBatchEvent> {
    if (this.life.stopped) return refuse(this.life.stoppedError());
    return callShards({ ...this.call(peer, model, options), shards });
  }

  private call(peer: PeerId, model: ModelRef, options: RunShardOptions): ShardCallBase {
    return {
      connectionManager: this.components.connectionManager,
      protocol: SHARD_PROTOCOL,
      peer,
      model,
      deadlineMs: options.deadlineMs ?? DEFAULT_CLIENT_DEADLINE_MS,
      signal: options.signal,
      inFlight: this.life.calls,
      onActivity: options.onActivity,
    };
  }

  load(): ShardLoad {
    return this.provider.load();
  }

  work(limit: number): WorkView[] {
    return this.provider.work.entries(limit);
  }
}

/** The libp2p service factory: `services: { shard: shardProtocol({ served, engines }) }`. */
export function shardProtocol(init: ShardInit = {}): (components: ShardComponents) => ShardService {
  return (components) => new DefaultShardService(components, init);
}

// biome-ignore lint/correctness/useYield: an iterable that fails when iterated, like a refused call
async function* refuse(error: Error): AsyncGenerator<never> {
  throw error;
}
