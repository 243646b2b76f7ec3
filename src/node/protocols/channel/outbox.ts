import { errorMessage } from "../../../util/errors.ts";
import type { FrameSink } from "../../wire.ts";

/**
 * Items written in order, as many per transport write as have queued: the QUIC stream takes one
 * write at a time (it reports no room until the native write completes), so while one write is out,
 * later items wait here and leave together in the next (`encode` turns a batch into frames). A pay
 * stream's updates and acks are small and frequent, and one native write each costs more than the
 * frames themselves. The first item of a burst is written at once, so a lone payment waits for
 * nothing. `before` runs for each batch just before it is written (the payer stores its pending
 * update there); if it throws, nothing of the batch is written.
 */
export class Outbox<T> {
  private readonly queue: T[] = [];
  private flushing: Promise<void> | undefined;
  /** Set when a write failed: later items are dropped (the stream is broken). */
  failure: Error | undefined;

  constructor(
    private readonly lp: FrameSink,
    private readonly encode: (items: T[]) => Uint8Array[],
    private readonly onError: (err: Error) => void,
    private readonly before?: (items: T[]) => void,
  ) {}

  push(item: T): void {
    if (this.failure) return;
    this.queue.push(item);
    this.flushing ??= this.flush();
  }

  /** Resolves once every queued item is written (or the stream failed). */
  async drained(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  private async flush(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.failure) {
        const items = this.queue.splice(0);
        this.before?.(items);
        const frames = this.encode(items);
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
