import { errorMessage } from "../../../util/errors.ts";
import type { FrameSink } from "../../wire.ts";

/**
 * Frames written in order, as many per transport write as have queued: the QUIC stream takes one
 * write at a time (it reports no room until the native write completes), so while one write is out,
 * later frames wait here and leave together in the next. A pay stream's updates and acks are small
 * and frequent, and one native write each costs more than the frames themselves. The first frame of
 * a burst is written at once, so a lone payment waits for nothing.
 */
export class Outbox {
  private readonly queue: Uint8Array[] = [];
  private flushing: Promise<void> | undefined;
  /** Set when a write failed: later frames are dropped (the stream is broken). */
  failure: Error | undefined;

  constructor(
    private readonly lp: FrameSink,
    private readonly onError: (err: Error) => void,
  ) {}

  push(frame: Uint8Array): void {
    if (this.failure) return;
    this.queue.push(frame);
    this.flushing ??= this.flush();
  }

  /** Resolves once every queued frame is written (or the stream failed). */
  async drained(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.failure) {
        const frames = this.queue.splice(0);
        await (frames.length === 1 ? this.lp.write(frames[0] as Uint8Array) : this.lp.writeV(frames));
      }
    } catch (err) {
      this.failure = err instanceof Error ? err : new Error(errorMessage(err));
      this.queue.length = 0;
      this.onError(this.failure);
    } finally {
      this.flushing = undefined;
    }
  }
}
