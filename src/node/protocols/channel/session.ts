import type { Stream } from "@libp2p/interface";
import type { ChannelUpdate, SignedState } from "../../../payments/channel/channel.ts";
import { ChannelError, RemoteChannelError } from "../../../payments/channel/errors.ts";
import { AbortedError, errorMessage } from "../../../util/errors.ts";
import {
  abortable,
  encode,
  type FrameStream,
  ProtocolError,
  readMessage,
  WIRE_VERSION,
  writeFrames,
} from "../../wire.ts";
import { AckMessageSchema, type PayMessage, remoteCode } from "./messages.ts";

/**
 * One pay stream of one channel, payer side: updates are written as they are signed and their acks
 * read back in the same order, so several can be in flight (a pipeline). `onAck` runs for each ack
 * in order (it records the acknowledged state) and its result resolves that update's `send`. An error
 * frame rejects the update it answers; the updates after it were never looked at (the payee stops
 * reading after a refusal) and are rejected as void. Any other failure fails every update in flight.
 */
export class PaySession {
  private readonly waiting: {
    sequence: number;
    resolve: (state: SignedState) => void;
    reject: (err: Error) => void;
  }[] = [];
  /** Why the session ended; no update is sent on it after that. */
  failed: Error | undefined;

  constructor(
    private readonly stream: Stream,
    private readonly lp: FrameStream,
    private readonly peer: string,
    private readonly channelId: string,
    private readonly onAck: (sequence: number) => SignedState,
  ) {
    void this.read();
  }

  /** Sends `update`; resolves with the acknowledged state. */
  async send(update: ChannelUpdate, signal: AbortSignal): Promise<SignedState> {
    if (this.failed) throw this.failed;
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
    await writeFrames(this.lp, [encode(frame)], { signal });
    return await abortable(acked, signal);
  }

  /** Every update in flight fails with `err`; the stream is reset. */
  fail(err: Error): void {
    this.failed ??= err;
    for (const w of this.waiting.splice(0)) w.reject(err);
    this.stream.abort(new AbortedError(errorMessage(err)));
  }

  /** Closes the stream gracefully (nothing in flight). */
  end(): void {
    this.failed ??= new ChannelError("the pay session ended");
    this.stream.close().catch(() => this.stream.abort(new AbortedError("closing the pay session")));
  }

  private async read(): Promise<void> {
    try {
      for (;;) {
        const reply = await readMessage(this.lp, AckMessageSchema);
        const head = this.waiting.shift();
        if (!head) throw new RemoteChannelError("protocol", this.peer, `${this.peer} sent an answer to no update`);
        if (reply.type === "error") {
          const refusal = new RemoteChannelError(
            remoteCode(reply.code),
            this.peer,
            `${this.peer} refused update ${head.sequence}: ${reply.message}`,
          );
          this.failed = refusal;
          head.reject(refusal);
          const rest = new RemoteChannelError(
            refusal.code,
            this.peer,
            `void: update ${head.sequence} before it was refused`,
          );
          this.fail(rest);
          return;
        }
        if (reply.channelId !== this.channelId || reply.sequence !== head.sequence) {
          throw new RemoteChannelError(
            "protocol",
            this.peer,
            `${this.peer} acknowledged ${reply.channelId} #${reply.sequence}, expected #${head.sequence}`,
          );
        }
        head.resolve(this.onAck(reply.sequence));
      }
    } catch (err) {
      if (this.failed && this.waiting.length === 0) return;
      const why =
        err instanceof ChannelError
          ? err
          : new RemoteChannelError(
              "protocol",
              this.peer,
              err instanceof ProtocolError && err.code === "ended"
                ? `the pay stream from ${this.peer} ended`
                : errorMessage(err),
              { cause: err },
            );
      this.fail(why);
    }
  }
}
