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
  MAX_SHARDS_PER_REQUEST,
  REMOTE_SHARD_ERROR_CODES,
  type RemoteShardErrorCode,
  ShardResponseSchema,
  type ShardUsage,
} from "./messages.ts";

/**
 * The client (aggregator) side of /infernet/shard/1.0.0: one stream per shard, or per batch of
 * shards. Partial results are checked against their shard (record order, count, kind, tensor type and
 * row shape, total size) and yielded as they arrive; `done` yields the whole result, assembled from
 * the partials. A batch's shards must come one after the other in request order, each ended by a
 * `done` naming it, so only one shard is ever being assembled. Leaving the loop early, aborting
 * `signal` or passing the deadline resets the stream, which stops the provider.
 */

/** What `runShard` yields: pieces of the result in record order, then the whole of it with usage. */
export type ShardEvent =
  /** Records `[first, first + n)` of the shard (`first` is shard-relative), `providers` = the peer. */
  { type: "partial"; first: number; result: ShardResult } | { type: "done"; result: ShardResult; usage: ShardUsage };

/** What `runShards` yields: `ShardEvent`s, each naming its shard by `index`, shard after shard. */
export type ShardBatchEvent =
  | { type: "partial"; shard: number; first: number; result: ShardResult }
  | { type: "done"; shard: number; result: ShardResult; usage: ShardUsage };

/** What every call needs: where, which model, the budget and the caller's signal. */
export interface ShardCallBase {
  connectionManager: ConnectionManager;
  protocol: string;
  peer: PeerId;
  model: { name: string; sha256: string };
  deadlineMs: number;
  signal: AbortSignal | undefined;
  inFlight: Set<AbortController>;
  /** Called on every frame from the provider, keepalives included (a watchdog's sign of life). */
  onActivity?: (() => void) | undefined;
}

export interface ShardCall extends ShardCallBase {
  shard: Shard;
}

export interface ShardBatchCall extends ShardCallBase {
  /** 1 to `MAX_SHARDS_PER_REQUEST` shards with distinct indices, run in this order. */
  shards: Shard[];
}

/** One shard, sent as a `shard` frame (whose `done` names no shard). */
export async function* callShard(call: ShardCall): AsyncGenerator<ShardEvent> {
  for await (const event of exchange(call, [call.shard], false)) {
    yield event.type === "done"
      ? { type: "done", result: event.result, usage: event.usage }
      : { type: "partial", first: event.first, result: event.result };
  }
}

/** Several shards on one stream, sent as a `shards` frame. */
export function callShards(call: ShardBatchCall): AsyncGenerator<ShardBatchEvent> {
  return exchange(call, call.shards, true);
}

/** The request frame, checked against the limits the provider enforces, so a refusal costs no stream. */
function requestFrame(call: ShardCallBase, shards: Shard[], batch: boolean): Uint8Array {
  const { deadlineMs } = call;
  if (!Number.isInteger(deadlineMs) || deadlineMs < 1 || deadlineMs > MAX_DEADLINE_MS) {
    throw new InvalidInputError(`the deadline must be 1 to ${MAX_DEADLINE_MS} ms, got ${deadlineMs}`);
  }
  if (batch && (shards.length < 1 || shards.length > MAX_SHARDS_PER_REQUEST)) {
    throw new InvalidInputError(`a batch holds 1 to ${MAX_SHARDS_PER_REQUEST} shards, got ${shards.length}`);
  }
  if (new Set(shards.map((shard) => shard.index)).size !== shards.length) {
    throw new InvalidInputError("a batch holds the same shard index twice");
  }
  const split = { hint: "split the job into smaller shards" };
  for (const shard of shards) {
    const size = payloadBytes(shard.payload);
    if (size > MAX_SHARD_BYTES) {
      throw new InvalidInputError(
        `shard ${shard.index} is ${size} bytes; one shard carries at most ${MAX_SHARD_BYTES}`,
        split,
      );
    }
  }
  const { model } = call;
  const frame = batch
    ? encode({ v: WIRE_VERSION, type: "shards", model, shards: shards.map(shardToWire), deadlineMs })
    : encode({ v: WIRE_VERSION, type: "shard", model, shard: shardToWire(shards[0] as Shard), deadlineMs });
  if (frame.byteLength > MAX_REQUEST_FRAME_BYTES) {
    const what = batch ? "the batch" : `shard ${shards[0]?.index}`;
    throw new InvalidInputError(
      `${what} is ${frame.byteLength} bytes on the wire; one request carries at most ${MAX_REQUEST_FRAME_BYTES}`,
      batch ? { hint: "send fewer shards per request" } : split,
    );
  }
  return frame;
}

/** The call itself, for one shard or a batch: deadline, stream, request, then the checked replies. */
async function* exchange(call: ShardCallBase, shards: Shard[], batch: boolean): AsyncGenerator<ShardBatchEvent> {
  const peer = call.peer.toString();
  const { deadlineMs } = call;
  const frame = requestFrame(call, shards, batch);
  const what = batch ? `a batch of ${shards.length} shards` : `shard ${shards[0]?.index}`;
  const controller = new AbortController();
  const { signal } = controller;
  if (call.signal?.aborted) throw abortReason(call.signal);
  const onCallerAbort = () => controller.abort(call.signal?.reason);
  call.signal?.addEventListener("abort", onCallerAbort, { once: true });
  const timer = setTimeout(
    () => controller.abort(new TimeoutError(`${peer} did not finish ${what} within ${deadlineMs} ms`)),
    deadlineMs,
  );
  call.inFlight.add(controller);
  let stream: Stream | undefined;
  let finished = false;
  const progress = new Progress(shards, peer, batch);
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
    for (;;) {
      const reply = await readMessage(lp, ShardResponseSchema, { signal });
      call.onActivity?.();
      if (reply.type === "error") {
        throw new RemoteShardError(remoteCode(reply.code), peer, `${peer} answered ${reply.code}: ${reply.message}`);
      }
      if (reply.type === "keepalive") continue;
      if (reply.type === "done") {
        const event = progress.done(reply.shard, reply.usage);
        // The last done ends the call: nothing the provider sends after it is read.
        finished = progress.complete;
        yield event;
        if (finished) return;
        continue;
      }
      yield progress.partial(reply.first, reply.result);
    }
  } catch (err) {
    throw failure(err, signal, peer, progress);
  } finally {
    clearTimeout(timer);
    call.signal?.removeEventListener("abort", onCallerAbort);
    call.inFlight.delete(controller);
    if (!finished) stream?.abort(new AbortedError("the client stopped the shard"));
  }
}

/**
 * Where a call stands: the shards done, in request order, and the one being assembled. Only that one
 * is held, so a batch's results in flight never exceed one shard's (`MAX_RESULT_BYTES`).
 */
class Progress {
  /** Position in the request of the shard being assembled; `shards.length` once all are done. */
  private at = 0;
  private assembly: Assembly | undefined;
  private readonly positions: Map<number, number>;

  constructor(
    private readonly shards: Shard[],
    private readonly peer: string,
    /** Batch mode: each done frame must name its shard. */
    private readonly batch: boolean,
  ) {
    this.positions = new Map(shards.map((shard, at) => [shard.index, at]));
  }

  get complete(): boolean {
    return this.at === this.shards.length;
  }

  partial(first: number, value: unknown): ShardBatchEvent {
    const assembly = this.current();
    const result = assembly.parse(value);
    this.expect(result.shard);
    return { type: "partial", shard: result.shard, first, result: assembly.add(first, result) };
  }

  done(named: number | undefined, usage: ShardUsage): ShardBatchEvent {
    if (named === undefined && this.batch) throw bad(this.peer, "a done frame that names no shard in a batch");
    const assembly = this.current();
    if (named !== undefined) this.expect(named);
    const result = assembly.finish(usage);
    const shard = this.shards[this.at] as Shard;
    this.at += 1;
    this.assembly = undefined;
    return { type: "done", shard: shard.index, result, usage };
  }

  /** Why the stream's end came too early. */
  ended(peer: string): string {
    if (!this.batch) return `the stream from ${peer} ended before the shard was done`;
    const shard = this.shards[this.at];
    return `the stream from ${peer} ended before shard ${shard?.index} was done (${this.at} of ${this.shards.length} done)`;
  }

  private current(): Assembly {
    const shard = this.shards[this.at];
    if (!shard) throw bad(this.peer, "a frame after every shard was done");
    this.assembly ??= new Assembly(shard, this.peer);
    return this.assembly;
  }

  /** Frames must be for the shard being assembled: the provider runs a batch in request order. */
  private expect(index: number): void {
    const at = this.positions.get(index);
    const now = this.shards[this.at]?.index;
    if (at === undefined) throw bad(this.peer, `a result for shard ${index}, which the request does not hold`);
    if (at < this.at) throw bad(this.peer, `a result for shard ${index} after its done`);
    if (at > this.at) throw bad(this.peer, `a result for shard ${index} before shard ${now} was done`);
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

  /** A partial's result, decoded within what is left of the shard's result budget. */
  parse(value: unknown): ShardResult {
    try {
      return resultFromWire(value, MAX_RESULT_BYTES - this.bytes);
    } catch (cause) {
      throw this.bad(`shard ${this.shard.index}: ${errorMessage(cause)}`, cause);
    }
  }

  add(first: number, result: ShardResult): ShardResult {
    const { shard } = this;
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
    return bad(this.peer, message, cause);
  }
}

function bad(peer: string, message: string, cause?: unknown): RemoteShardError {
  return new RemoteShardError("bad-result", peer, `${peer} sent a bad result: ${message}`, { cause });
}

function failure(err: unknown, signal: AbortSignal, peer: string, progress: Progress): Error {
  if (signal.aborted) return abortReason(signal);
  if (err instanceof RemoteShardError || err instanceof InvalidInputError) return err;
  if (err instanceof ProtocolError) {
    const code = err.code === "unsupported-version" ? "unsupported-version" : "protocol";
    const what = err.code === "ended" ? progress.ended(peer) : err.message;
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
