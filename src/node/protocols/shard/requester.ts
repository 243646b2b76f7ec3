import type { PeerId, Stream } from "@libp2p/interface";
import type { ConnectionManager } from "@libp2p/interface-internal";
import { MAX_SHARD_BYTES, payloadBytes, type Shard, type ShardResult } from "../../../jobs/records.ts";
import { MAX_RESULT_BYTES, resultFromWire, shardToWire } from "../../../jobs/shard-codec.ts";
import type { Tensor } from "../../../runtime/engine.ts";
import { concatBatch } from "../../../runtime/onnx/tensors.ts";
import { abortReason } from "../../../util/abort.ts";
import { AbortedError, errorMessage, InvalidInputError, TimeoutError } from "../../../util/errors.ts";
import { abortable, encode, ProtocolError, readMessage, WIRE_VERSION, wireStream, writeFrames } from "../../wire.ts";
import { RemoteShardError } from "./errors.ts";
import {
  MAX_DEADLINE_MS,
  MAX_REQUEST_FRAME_BYTES,
  MAX_RESPONSE_FRAME_BYTES,
  REMOTE_SHARD_ERROR_CODES,
  type RemoteShardErrorCode,
  ShardResponseSchema,
  type ShardUsage,
} from "./messages.ts";

/**
 * The client (aggregator) side of /infernet/shard/1.0.0: one stream per shard. Partial results are
 * checked against the shard (record order, count, kind, tensor type and row shape, total size) and
 * yielded as they arrive; `done` yields the whole result, assembled from the partials. Leaving the loop
 * early, aborting `signal` or passing the deadline resets the stream, which stops the provider.
 */

/** What `runShard` yields: pieces of the result in record order, then the whole of it with usage. */
export type ShardEvent =
  /** Records `[first, first + n)` of the shard (`first` is shard-relative), `providers` = the peer. */
  { type: "partial"; first: number; result: ShardResult } | { type: "done"; result: ShardResult; usage: ShardUsage };

export interface ShardCall {
  connectionManager: ConnectionManager;
  protocol: string;
  peer: PeerId;
  model: { name: string; sha256: string };
  shard: Shard;
  deadlineMs: number;
  signal: AbortSignal | undefined;
  inFlight: Set<AbortController>;
  /** Called on every frame from the provider, keepalives included (a watchdog's sign of life). */
  onActivity?: (() => void) | undefined;
}

export async function* callShard(call: ShardCall): AsyncGenerator<ShardEvent> {
  const peer = call.peer.toString();
  const { deadlineMs, shard } = call;
  if (!Number.isInteger(deadlineMs) || deadlineMs < 1 || deadlineMs > MAX_DEADLINE_MS) {
    throw new InvalidInputError(`the deadline must be 1 to ${MAX_DEADLINE_MS} ms, got ${deadlineMs}`);
  }
  const size = payloadBytes(shard.payload);
  const frame = encode({ v: WIRE_VERSION, type: "shard", model: call.model, shard: shardToWire(shard), deadlineMs });
  if (size > MAX_SHARD_BYTES || frame.byteLength > MAX_REQUEST_FRAME_BYTES) {
    throw new InvalidInputError(`shard ${shard.index} is ${size} bytes; one shard carries at most ${MAX_SHARD_BYTES}`, {
      hint: "split the job into smaller shards",
    });
  }
  const controller = new AbortController();
  const { signal } = controller;
  if (call.signal?.aborted) throw abortReason(call.signal);
  const onCallerAbort = () => controller.abort(call.signal?.reason);
  call.signal?.addEventListener("abort", onCallerAbort, { once: true });
  const timer = setTimeout(
    () => controller.abort(new TimeoutError(`${peer} did not finish shard ${shard.index} within ${deadlineMs} ms`)),
    deadlineMs,
  );
  call.inFlight.add(controller);
  let stream: Stream | undefined;
  let finished = false;
  try {
    try {
      // The shard frame goes out with the protocol name: no round trip to wait for per shard.
      stream = await call.connectionManager.openStream(call.peer, call.protocol, { signal, negotiateFully: false });
    } catch (cause) {
      if (signal.aborted) throw abortReason(signal);
      throw new RemoteShardError("protocol", peer, `cannot open a shard stream to ${peer}: ${errorMessage(cause)}`, {
        cause,
      });
    }
    const lp = wireStream(stream, MAX_RESPONSE_FRAME_BYTES);
    await writeFrames(lp, [frame], { signal });
    await abortable(stream.close(), signal);
    const assembly = new Assembly(shard, peer);
    for (;;) {
      const reply = await readMessage(lp, ShardResponseSchema, { signal });
      call.onActivity?.();
      if (reply.type === "error") {
        throw new RemoteShardError(remoteCode(reply.code), peer, `${peer} answered ${reply.code}: ${reply.message}`);
      }
      if (reply.type === "keepalive") continue;
      if (reply.type === "done") {
        const result = assembly.finish(reply.usage);
        finished = true;
        yield { type: "done", result, usage: reply.usage };
        return;
      }
      yield { type: "partial", first: reply.first, result: assembly.add(reply.first, reply.result) };
    }
  } catch (err) {
    throw failure(err, signal, peer);
  } finally {
    clearTimeout(timer);
    call.signal?.removeEventListener("abort", onCallerAbort);
    call.inFlight.delete(controller);
    if (!finished) stream?.abort(new AbortedError("the client stopped the shard"));
  }
}

/** Checks each partial against the shard and what came before, and joins them. */
class Assembly {
  private received = 0;
  private bytes = 0;
  private readonly texts: string[] = [];
  private readonly tensors: Tensor[] = [];

  constructor(
    private readonly shard: Shard,
    private readonly peer: string,
  ) {}

  add(first: number, value: unknown): ShardResult {
    const { shard } = this;
    let result: ShardResult;
    try {
      result = resultFromWire(value, MAX_RESULT_BYTES - this.bytes);
    } catch (cause) {
      throw this.bad(`shard ${shard.index}: ${errorMessage(cause)}`, cause);
    }
    if (result.shard !== shard.index)
      throw this.bad(`a result for shard ${result.shard} on shard ${shard.index}'s stream`);
    if (first !== this.received) throw this.bad(`records from ${first} after ${this.received} of ${shard.count}`);
    const want = shard.payload.kind === "prompts" ? "text" : "tensor";
    if (result.kind !== want) throw this.bad(`a ${result.kind} result for a ${shard.payload.kind} shard`);
    // The stream's peer computed it, whatever the frame claims.
    result.providers = [this.peer];
    let records: number;
    if (result.kind === "text") {
      records = result.outputs.length;
      this.bytes += result.outputs.reduce((n, o) => n + o.length, 0);
      this.texts.push(...result.outputs);
    } else {
      const { output } = result;
      records = output.dims[0] ?? 0;
      const earlier = this.tensors[0];
      if (output.dims.length < 1) throw this.bad("a scalar output; rows are records");
      if (earlier && (earlier.type !== output.type || earlier.dims.slice(1).join() !== output.dims.slice(1).join())) {
        throw this.bad(
          `a [${output.dims.join(", ")}] ${output.type} output after [${earlier.dims.join(", ")}] ${earlier.type}`,
        );
      }
      this.bytes += output.data.byteLength;
      this.tensors.push(output);
    }
    if (records < 1 || this.received + records > shard.count) {
      throw this.bad(`${records} records from ${first}; the shard holds ${shard.count}`);
    }
    this.received += records;
    return result;
  }

  finish(usage: ShardUsage): ShardResult {
    const { shard } = this;
    if (this.received !== shard.count) throw this.bad(`done after ${this.received} of ${shard.count} records`);
    if (usage.records !== shard.count) throw this.bad(`usage counts ${usage.records} of ${shard.count} records`);
    if (shard.payload.kind === "prompts")
      return { kind: "text", shard: shard.index, providers: [this.peer], outputs: this.texts };
    return { kind: "tensor", shard: shard.index, providers: [this.peer], output: concatBatch(this.tensors) };
  }

  private bad(message: string, cause?: unknown): RemoteShardError {
    return new RemoteShardError("bad-result", this.peer, `${this.peer} sent a bad result: ${message}`, { cause });
  }
}

function failure(err: unknown, signal: AbortSignal, peer: string): Error {
  if (signal.aborted) return abortReason(signal);
  if (err instanceof RemoteShardError || err instanceof InvalidInputError) return err;
  if (err instanceof ProtocolError) {
    const code = err.code === "unsupported-version" ? "unsupported-version" : "protocol";
    const what = err.code === "ended" ? `the stream from ${peer} ended before the shard was done` : err.message;
    return new RemoteShardError(code, peer, what, { cause: err });
  }
  return new RemoteShardError("protocol", peer, `the stream from ${peer} failed: ${errorMessage(err)}`, { cause: err });
}

/** A code from the wire as one we know; a newer peer's unknown code (or a claimed `bad-result`) is "internal". */
function remoteCode(code: string): RemoteShardErrorCode {
  return code !== "bad-result" && (REMOTE_SHARD_ERROR_CODES as readonly string[]).includes(code)
    ? (code as RemoteShardErrorCode)
    : "internal";
}
