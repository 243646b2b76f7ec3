import type { PeerId, Stream } from "@libp2p/interface";
import type { ConnectionManager } from "@libp2p/interface-internal";
import type { z } from "zod";
import { abortReason } from "../../../util/abort.ts";
import { AbortedError, errorMessage, TimeoutError } from "../../../util/errors.ts";
import {
  abortable,
  type FrameStream,
  readMessage,
  type WireMessage,
  wireStream,
  writeFrames,
  writeMessage,
} from "../../wire.ts";
import { callFailure, fromErrorFrame, RemoteJobError } from "./errors.ts";
import { MAX_RESPONSE_FRAME_BYTES } from "./messages.ts";

/**
 * The client end of one job call: a stream to the aggregator, a signal that aborts when the caller's
 * does, when the service stops, or when the aggregator has sent nothing at all (not even a keepalive)
 * for `quietTimeoutMs`, and frame reading that skips keepalives and turns error frames into typed
 * errors. Disposing it resets the stream unless the call ended cleanly (`finish`).
 */

/** What every client call needs from the service. */
export interface CallContext {
  connectionManager: ConnectionManager;
  protocol: string;
  /** The client gives up on an aggregator that has sent no frame for this long. */
  quietTimeoutMs: number;
  /** Calls in flight, aborted when the service stops. */
  inFlight: Set<AbortController>;
}

export class Call implements Disposable {
  readonly peer: string;
  private readonly controller = new AbortController();
  private stream: Stream | undefined;
  private frames: FrameStream | undefined;
  private quiet: ReturnType<typeof setTimeout> | undefined;
  private finished = false;
  private readonly onCallerAbort: () => void;

  private constructor(
    private readonly context: CallContext,
    target: PeerId,
    /** What the call does, for messages ("the upload"). */
    readonly what: string,
    private readonly caller: AbortSignal | undefined,
  ) {
    this.peer = target.toString();
    this.onCallerAbort = () => this.controller.abort(caller?.reason);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Opens a stream to `peer` (dialling its known addresses when not connected). */
  static async open(context: CallContext, peer: PeerId, what: string, caller: AbortSignal | undefined): Promise<Call> {
    if (caller?.aborted) throw abortReason(caller);
    const call = new Call(context, peer, what, caller);
    caller?.addEventListener("abort", call.onCallerAbort, { once: true });
    context.inFlight.add(call.controller);
    call.rearm();
    try {
      call.stream = await context.connectionManager.openStream(peer, context.protocol, { signal: call.signal });
    } catch (cause) {
      call[Symbol.dispose]();
      if (call.signal.aborted) throw abortReason(call.signal);
      throw new RemoteJobError(
        "protocol",
        call.peer,
        `cannot open a job stream to ${call.peer}: ${errorMessage(cause)}`,
        {
          cause,
        },
      );
    }
    call.frames = wireStream(call.stream, MAX_RESPONSE_FRAME_BYTES);
    return call;
  }

  async send(message: WireMessage): Promise<void> {
    await writeMessage(this.lp, message, { signal: this.signal });
  }

  async sendFrame(frame: Uint8Array): Promise<void> {
    await writeFrames(this.lp, [frame], { signal: this.signal });
  }

  /** Closes the writing half: the request is complete. */
  async closeWrite(): Promise<void> {
    await abortable((this.stream as Stream).close(), this.signal);
  }

  /**
   * The next frame other than a keepalive, checked with `schema`; an error frame is thrown as the
   * typed error its code names.
   */
  async read<S extends z.ZodType>(schema: S): Promise<Exclude<z.infer<S>, { type: "keepalive" | "error" }>> {
    for (;;) {
      const reply = (await readMessage(this.lp, schema, { signal: this.signal })) as { type: string };
      this.rearm();
      if (reply.type === "keepalive") continue;
      if (reply.type === "error") throw fromErrorFrame(reply as never, this.peer);
      return reply as Exclude<z.infer<S>, { type: "keepalive" | "error" }>;
    }
  }

  /** What to throw for `err`, raised during the call. */
  failure(err: unknown): Error {
    return callFailure(err, this.signal, this.peer, this.what);
  }

  /** The aggregator answered something the protocol does not allow here. */
  broken(message: string): RemoteJobError {
    return new RemoteJobError("protocol", this.peer, `${this.peer} broke the job protocol: ${message}`);
  }

  /** The call ended cleanly: disposing closes the stream instead of resetting it. */
  finish(): void {
    this.finished = true;
  }

  [Symbol.dispose](): void {
    clearTimeout(this.quiet);
    this.caller?.removeEventListener("abort", this.onCallerAbort);
    this.context.inFlight.delete(this.controller);
    if (this.finished) {
      // Both ends are done: the aggregator closes its side after its last frame.
      this.stream?.close().catch((err: Error) => this.stream?.abort(err));
    } else {
      this.stream?.abort(new AbortedError(`the client stopped ${this.what}`));
    }
  }

  private get lp(): FrameStream {
    return this.frames as FrameStream;
  }

  private rearm(): void {
    clearTimeout(this.quiet);
    const ms = this.context.quietTimeoutMs;
    this.quiet = setTimeout(
      () => this.controller.abort(new TimeoutError(`${this.peer} sent nothing for ${ms} ms during ${this.what}`)),
      ms,
    );
  }
}
