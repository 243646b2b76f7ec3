import type { Stream } from "@libp2p/interface";
import type { ChannelUpdate, SignedState } from "../../../payments/channel/channel.ts";
import { ChannelError, RemoteChannelError } from "../../../payments/channel/errors.ts";
import { AbortedError, errorMessage } from "../../../util/errors.ts";
import { abortable, encode, type FrameStream, ProtocolError, readMessage, WIRE_VERSION } from "../../wire.ts";
import { AckMessageSchema, MAX_UPDATES_PER_FRAME, type PayMessage, remoteCode } from "./messages.ts";
import { Outbox } from "./outbox.ts";

/**
 * A pay session with nothing in flight for this long is closed by the payer (sooner than the payee's
 * PAY_IDLE_TIMEOUT_MS, so the payee's idle refusal never meets a new update).
 */
export const SESSION_IDLE_CLOSE_MS = 30_000;

export interface SessionEvents {
  /** Just before updates are written: stores the newest as pending (throwing sends none of them). */
  beforeSend(newest: SignedState): void;
  /** An ack of `sequence` (and every update before it), in order: records the acknowledged state. */
  onAck(sequence: number): void;
  /** The session ended with `err` while `inFlight` updates were unacknowledged (called once). */
  onFail(err: Error, inFlight: number): void;
}

interface Waiting {
  state: SignedState;
  resolve: (s: SignedState) => void;
  reject: (e: Error) => void;
}

/**
 * One pay stream of one channel, payer side: updates are written as they are signed, those signed
 * while a write is out together in one frame, so several are in flight (a pipeline). An ack of n
 * acknowledges every update up to n. An error frame rejects the first unacknowledged update; the
 * ones after it were never looked at (the payee stops reading after a refusal) and are rejected as
 * void. Any other failure fails every update in flight.
 */
export class PaySession {
  private readonly waiting: Waiting[] = [];
  private idle: ReturnType<typeof setTimeout> | undefined;
  private readonly outbox: Outbox<ChannelUpdate>;
  /** Why the session ended; nothing is sent on it after that. */
  failed: Error | undefined;

  constructor(
    private readonly stream: Stream,
    private readonly lp: FrameStream,
    private readonly peer: string,
    private readonly channelId: string,
    private readonly events: SessionEvents,
  ) {
    this.outbox = new Outbox<ChannelUpdate>(
      lp,
      (updates) => payFrames(channelId, updates),
      (err) =>
        this.fail(
          err instanceof ChannelError
            ? err
            : new RemoteChannelError("protocol", peer, `cannot write to ${peer}: ${errorMessage(err)}`),
        ),
      (updates) => {
        const newest = updates.at(-1) as ChannelUpdate;
        events.beforeSend(newest);
      },
    );
    void this.read();
    this.idleTimer();
  }

  /** Queues `update` for writing (at once when no write is out) and resolves with its acknowledged state. */
  async send(update: ChannelUpdate, signal: AbortSignal): Promise<SignedState> {
    if (this.failed) throw this.failed;
    clearTimeout(this.idle);
    const state: SignedState = {
      sequence: update.sequence,
      paidMsat: update.paidMsat,
      tx: update.tx,
      signature: update.signature,
    };
    const acked = new Promise<SignedState>((resolve, reject) => this.waiting.push({ state, resolve, reject }));
    acked.catch(() => {});
    this.outbox.push(update);
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
        const head = this.waiting[0];
        if (reply.type === "error") {
          const what = head ? `update ${head.state.sequence}` : "the session";
          const refusal = new RemoteChannelError(
            remoteCode(reply.code),
            this.peer,
            `${this.peer} refused ${what}: ${reply.message}`,
          );
          this.fail(head ? refusal : new ChannelError(`the payee ended the session: ${reply.message}`));
          return;
        }
        const count = this.waiting.findIndex((w) => w.state.sequence === reply.sequence) + 1;
        if (reply.channelId !== this.channelId || count === 0) {
          throw new RemoteChannelError(
            "protocol",
            this.peer,
            `${this.peer} acknowledged #${reply.sequence}, never sent`,
          );
        }
        // Recorded before any payment resolves; if it cannot be, they all stay in flight and fail.
        this.events.onAck(reply.sequence);
        for (const w of this.waiting.splice(0, count)) w.resolve(w.state);
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

/** `updates` as `pay` frames of at most MAX_UPDATES_PER_FRAME each. */
function payFrames(channelId: string, updates: ChannelUpdate[]): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let i = 0; i < updates.length; i += MAX_UPDATES_PER_FRAME) {
    const frame: PayMessage = {
      v: WIRE_VERSION,
      type: "pay",
      channelId,
      updates: updates.slice(i, i + MAX_UPDATES_PER_FRAME).map((u) => ({
        sequence: u.sequence,
        paidMsat: u.paidMsat.toString(),
        amountMsat: u.amountMsat.toString(),
        tx: u.tx,
        signature: u.signature,
        memo: u.memo,
      })),
    };
    frames.push(encode(frame));
  }
  return frames;
}
