import type { Connection, Stream } from "@libp2p/interface";
import type { Shard, ShardResult } from "../../../jobs/records.ts";
import { resultToWire, shardFromWire } from "../../../jobs/shard-codec.ts";
import type { Engine, LocalModel, RuntimeName } from "../../../runtime/engine.ts";
import { AbortedError, errorMessage, InvalidInputError, TimeoutError } from "../../../util/errors.ts";
import { logger } from "../../../util/logger.ts";
import {
  errorFrame,
  type FrameSink,
  ProtocolError,
  readMessage,
  WIRE_VERSION,
  type WireMessage,
  wireStream,
  writeMessage,
} from "../../wire.ts";
import { WorkLog } from "../../work-log.ts";
import { answerError, InboundJob } from "../inbound.ts";
import { Slots } from "../slots.ts";
import { executeShard } from "./execute.ts";
import {
  MAX_REQUEST_FRAME_BYTES,
  type RemoteShardErrorCode,
  ShardRequestMessageSchema,
  type ShardUsage,
} from "./messages.ts";

/**
 * The provider side of /infernet/shard/1.0.0: reads one shard (or a batch of them) per stream,
 * validates it, waits for a slot (bounded concurrency, bounded FIFO queue), runs it and streams
 * `partial` frames as records finish, then `done` with usage (a batch: each shard in turn, in the
 * same slot). The engines' signal fires when the aggregator resets or closes the
 * stream, the deadline passes, or the service stops, so a cancelled shard stops computing at once.
 */
const log = logger("node:shard");

/** The shard frame must arrive this soon after the stream opens (it can be 32 MiB). */
export const REQUEST_READ_TIMEOUT_MS = 30_000;
/** Longest wait to flush a final frame (an error or after `done`) before the stream is reset. */
export const CLOSE_TIMEOUT_MS = 5_000;
/**
 * A `keepalive` frame goes out when nothing was written for this long. Why: the client half-closes
 * after its request, so over QUIC its reset reaches the provider only as STOP_SENDING, which shows
 * up on a later write (within a keepalive or two); without one, a cancelled shard would compute until
 * its next partial (a whole long generation). It also tells the aggregator a quiet provider is at work.
 */
export const KEEPALIVE_MS = 1_000;

export interface ShardProviderSettings {
  served: () => Map<string, LocalModel>;
  accepting: () => boolean;
  engines: Partial<Record<RuntimeName, Engine>>;
  self: string;
  maxConcurrent: number;
  maxQueued: number;
  shardTimeoutMs: number;
  batchRecords: number;
}

/** Why a shard was refused or failed, as the code and message of its error frame. */
class Refusal extends Error {
  constructor(
    readonly code: RemoteShardErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export class ShardProvider {
  private readonly slots: Slots;
  private completed = 0;
  private failures = 0;
  /** Shards in flight; each is aborted when the service stops. */
  private readonly jobs = new Set<AbortController>();
  /** What runs now and what ran last, for the dashboard. */
  readonly work = new WorkLog();

  constructor(private readonly settings: ShardProviderSettings) {
    this.slots = new Slots(settings.maxConcurrent, settings.maxQueued);
  }

  load(): { active: number; queued: number; maxConcurrent: number; served: number; failed: number } {
    return { ...this.slots.load(), served: this.completed, failed: this.failures };
  }

  stop(): void {
    for (const job of this.jobs) job.abort(new AbortedError("the provider is stopping"));
  }

  readonly handle = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString();
    const lp = wireStream(stream, MAX_REQUEST_FRAME_BYTES);
    using job = new InboundJob(stream, this.jobs, REQUEST_READ_TIMEOUT_MS, "shard");
    const { signal } = job;
    let release: (() => void) | undefined;
    /** Shards accepted and not yet done: they count as failed if the stream fails. */
    let pending = 0;
    try {
      const message = await readMessage(lp, ShardRequestMessageSchema, { signal });
      job.startBudget(Math.min(message.deadlineMs ?? this.settings.shardTimeoutMs, this.settings.shardTimeoutMs));
      if (!this.settings.accepting()) throw new Refusal("busy", "this provider has paused serving");
      const model = this.settings.served().get(message.model.sha256);
      if (!model || !this.settings.engines[model.runtime]) {
        throw new Refusal(
          "model-not-served",
          `this node does not serve ${message.model.name} (${message.model.sha256})`,
        );
      }
      const batch = message.type === "shards";
      const shards = batch ? toShards(message.shards) : [toShard(message.shard)];
      pending = shards.length;
      // Only a batch's done frames name their shard: a single shard's frames stay as they always were.
      const done = (shard: Shard, usage: ShardUsage): WireMessage =>
        batch ? { v: WIRE_VERSION, type: "done", shard: shard.index, usage } : { v: WIRE_VERSION, type: "done", usage };
      // Keepalives flow while the shard waits for a slot too, so the aggregator can tell a queued
      // shard from a provider that vanished.
      const last = await this.withKeepalive(lp, job, async (send) => {
        release = await this.slots.acquire(signal, () => {
          throw new Refusal(
            "busy",
            `all ${this.settings.maxConcurrent} slots and ${this.settings.maxQueued} queue places are taken`,
          );
        });
        const run = async (shard: Shard): Promise<WireMessage> => {
          log.debug("shard", { peer, model: model.name, shard: shard.index, records: shard.count });
          const entry = this.work.begin({
            kind: "shard",
            model: model.name,
            peer,
            unit: "records",
            total: shard.count,
          });
          try {
            const usage = await executeShard(
              model,
              shard,
              async (first, result) => {
                await send({ v: WIRE_VERSION, type: "partial", first, result: resultToWire(result) });
                entry.reach(first + recordsIn(result));
              },
              {
                engines: this.settings.engines,
                batchRecords: this.settings.batchRecords,
                self: this.settings.self,
                signal,
              },
            );
            entry.end();
            return done(shard, usage);
          } catch (err) {
            entry.end(job.reason(err));
            throw err;
          }
        };
        // A batch runs in this one slot, one shard after another, in request order.
        for (const shard of shards.slice(0, -1)) {
          await send(await run(shard));
          this.completed += 1;
          pending -= 1;
        }
        return await run(shards.at(-1) as Shard);
      });
      // The slot is free before the last done goes out, so a client that saw it sees the slot free.
      release?.();
      release = undefined;
      this.completed += 1;
      pending = 0;
      await writeMessage(lp, last, { signal });
      await job.finish(CLOSE_TIMEOUT_MS);
    } catch (err) {
      release?.();
      if (job.clientGone) stream.abort(job.gone);
      else await this.fail(stream, lp, job.reason(err), peer, Math.max(1, pending));
    } finally {
      release?.();
    }
  };

  /** Runs `work` with a `send` for its frames, writing a keepalive frame whenever the stream has been quiet. */
  private async withKeepalive<T>(
    lp: FrameSink,
    job: InboundJob,
    work: (send: (message: WireMessage) => Promise<void>) => Promise<T>,
  ): Promise<T> {
    const { signal } = job;
    let writing = false;
    let last = performance.now();
    const send = async (message: WireMessage): Promise<void> => {
      writing = true;
      try {
        await writeMessage(lp, message, { signal });
      } finally {
        writing = false;
        last = performance.now();
      }
    };
    const timer = setInterval(() => {
      if (writing || performance.now() - last < KEEPALIVE_MS) return;
      // A failed keepalive means the client is gone: stop computing for it.
      send({ v: WIRE_VERSION, type: "keepalive" }).catch(() => job.clientLeft());
    }, KEEPALIVE_MS / 2);
    try {
      return await work(send);
    } finally {
      clearInterval(timer);
    }
  }

  /**
   * Counts a failure of this provider's own (not a refusal), logs, and answers with the error. An
   * engine failure or a deadline counts as `failed` shards (those of a batch not done yet).
   */
  private async fail(stream: Stream, lp: FrameSink, err: unknown, peer: string, failed: number): Promise<void> {
    const { code, message } = classify(err);
    if (code === "internal" || code === "timeout") this.failures += failed;
    if (code === "internal") log.warn("shard failed", { peer, error: err });
    else log.debug("shard refused", { peer, code, message });
    await answerError(stream, lp, errorFrame(code, message), CLOSE_TIMEOUT_MS);
  }
}

function toShard(value: unknown): Shard {
  try {
    return shardFromWire(value);
  } catch (cause) {
    throw new Refusal("bad-request", errorMessage(cause));
  }
}

/** A batch's shards, each checked as a single shard is, with distinct indices. */
function toShards(values: unknown[]): Shard[] {
  const shards = values.map(toShard);
  const indices = new Set(shards.map((shard) => shard.index));
  if (indices.size !== shards.length) throw new Refusal("bad-request", "a batch holds the same shard index twice");
  return shards;
}

function classify(err: unknown): { code: RemoteShardErrorCode; message: string } {
  if (err instanceof Refusal) return { code: err.code, message: err.message };
  if (err instanceof ProtocolError) {
    if (err.code === "unsupported-version") return { code: "unsupported-version", message: err.message };
    return { code: "bad-request", message: err.message };
  }
  if (err instanceof TimeoutError) return { code: "timeout", message: err.message };
  if (err instanceof InvalidInputError) return { code: "invalid-input", message: err.message };
  if (err instanceof AbortedError) return { code: "internal", message: err.message };
  return { code: "internal", message: `${err instanceof Error ? err.name : "Error"}: ${errorMessage(err)}` };
}

/** Records in a piece of a shard's result: one output per prompt, or the first dimension of the tensor. */
function recordsIn(result: ShardResult): number {
  return result.kind === "text" ? result.outputs.length : (result.output.dims[0] ?? 0);
}
