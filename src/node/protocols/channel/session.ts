import type { Stream } from "@libp2p/interface";
import type { ChannelUpdate, SignedState } from "../../../payments/channel/channel.ts";
import { ChannelError, RemoteChannelError } from "../../../payments/channel/errors.ts";
import { AbortedError, errorMessage } from "../../../util/errors.ts";
import { abortable, encode, type FrameStream, ProtocolError, readMessage, WIRE_VERSION } from "../../wire.ts";
import { AckMessageSchema, type PayMessage, remoteCode } from "./messages.ts";
import { Outbox } from "./outbox.ts";

/**
 * A pay session with nothing in flight for this long is closed by the payer (sooner than the payee's
 * PAY_IDLE_TIMEOUT_MS, so the payee's idle refusal never meets a new update).
 */
export const SESSION_IDLE_CLOSE_MS = 30_000;

export interface SessionEvents {
  /** An ack, in order: records the acknowledged state and returns it. */
  onAck(sequence: number): SignedState;
  /** The session ended with `err` while `inFlight` updates were unacknowledged (called once). */
  onFail(err: Error, inFlight: number): void;
}

/**
 * One pay stream of one channel, payer side: updates are written as they are signed and their acks
 * read back in the same order, so several can be in flight (a pipeline). An error frame rejects the
 * update it answers; the updates after it were never looked at (the payee stops reading after a
 * refusal) and are rejected as void. Any other failure fails every update in flight.
 */
export class PaySession {
  private readonly waiting: { sequence: number; resolve: (s: SignedState) => void; reject: (e: Error) => void }[] = [];
  private idle: ReturnType<typeof setTimeout> | undefined;
  private readonly outbox: Outbox;
  /** Why the session ended; nothing is sent on it after that. */
  failed: Error | undefined;

  constructor(
    private readonly stream: Stream,
    private readonly lp: FrameStream,
    private readonly peer: string,
    private readonly channelId: string,
    private readonly events: SessionEvents,
  ) {
    this.outbox = new Outbox(lp, (err) =>
      this.fail(new RemoteChannelError("protocol", peer, `cannot write to ${peer}: ${errorMessage(err)}`)),
    );
    void this.read();
    this.idleTimer();
  }

  /** Queues `update` for writing (at once when no write is out) and resolves with its acknowledged state. */
  async send(update: ChannelUpdate, signal: AbortSignal): Promise<SignedState> {
    if (this.failed) throw this.failed;
    clearTimeout(this.idle);
    const acked = new Promise<SignedState>((resolve, reject) =>
      this.waiting.push({ sequence: update.sequence, resolve, reject }),
    );
    acked.catch(() => {});
    const frame: PayMessage = {
      v: WIRE_VERSION,
      type: "pay",
      channelId: update.channelId,
      sequence: update.sequence,
      paidMsat: update.paidMsat.toString(),
      amountMsat: update.amountMsat.toString(),
      tx: update.tx,
      signature: update.signature,
      memo: update.memo,
    };
    this.outbox.push(encode(frame));
    return await abortable(acked, signal);
  }

  /** Ends the session: every update in flight fails with `err`, the stream is reset. Idempotent. */
  fail(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    clearTimeout(this.idle);
    const waiting = this.waiting.splice(0);
    this.events.onFail(err, waiting.length);
    for (const w of waiting) w.reject(err);
    this.stream.abort(new AbortedError(errorMessage(err)));
  }

  /** Closes the stream gracefully (nothing in flight). */
  end(): void {
    if (this.failed) return;
    this.failed = new ChannelError("the pay session ended");
    clearTimeout(this.idle);
    this.events.onFail(this.failed, this.waiting.length);
    this.stream.close().catch(() => this.stream.abort(new AbortedError("closing the pay session")));
  }

  private idleTimer(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      if (this.waiting.length === 0) this.end();
    }, SESSION_IDLE_CLOSE_MS);
  }

  private async read(): Promise<void> {
    try {
      for (;;) {
        const reply = await readMessage(this.lp, AckMessageSchema);
        const head = this.waiting.shift();
        if (reply.type === "error") {
          const what = head ? `update ${head.sequence}` : "the session";
          const refusal = new RemoteChannelError(
            remoteCode(reply.code),
            this.peer,
            `${this.peer} refused ${what}: ${reply.message}`,
          );
          head?.reject(refusal);
          this.fail(head ? refusal : new ChannelError(`the payee ended the session: ${reply.message}`));
          return;
        }
        if (!head)
          throw new RemoteChannelError("protocol", this.peer, `${this.peer} acknowledged an update never sent`);
        if (reply.channelId !== this.channelId || reply.sequence !== head.sequence) {
          throw new RemoteChannelError(
            "protocol",
            this.peer,
            `${this.peer} acknowledged #${reply.sequence}, not #${head.sequence}`,
          );
        }
        let state: SignedState;
        try {
          state = this.events.onAck(reply.sequence);
        } catch (err) {
          // Acknowledged by the payee but not recorded here: still in flight, as far as this side knows.
          this.waiting.unshift(head);
          throw err;
        }
        head.resolve(state);
        if (this.waiting.length === 0) this.idleTimer();
      }
    } catch (err) {
      if (this.failed) return;
      const ended = err instanceof ProtocolError && err.code === "ended";
      this.fail(
        err instanceof ChannelError
          ? err
          : new RemoteChannelError(
              "protocol",
              this.peer,
              ended ? `the pay stream from ${this.peer} ended` : errorMessage(err),
              { cause: err },
            ),
      );
    }
  }
}
