/**
 * Requests waiting for a provider slot, per model, in the order they first waited. While every
 * provider of a model is busy, a request waits here instead of polling: each generation of that model
 * that ends on this gateway wakes the longest waiter at once, and a timer (capacity can also free up
 * because another client's work ended) wakes each one after its backoff. A waiter that tries and finds
 * the providers busy again goes back to its place, not to the end.
 */
export class SlotQueue {
  private readonly waiting = new Map<string, { since: number; wake: () => void }[]>();

  /** Waits for a slot of `model` to free up here, or `ms`, or `signal`; `since` keeps the waiter's place. */
  wait(model: string, since: number, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const list = this.waiting.get(model) ?? [];
      this.waiting.set(model, list);
      const waiter = {
        since,
        wake: () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", waiter.wake);
          const i = list.indexOf(waiter);
          if (i >= 0) list.splice(i, 1);
          if (list.length === 0 && this.waiting.get(model) === list) this.waiting.delete(model);
          resolve();
        },
      };
      const timer = setTimeout(waiter.wake, ms);
      signal.addEventListener("abort", waiter.wake, { once: true });
      const at = list.findIndex((w) => w.since > since);
      list.splice(at < 0 ? list.length : at, 0, waiter);
    });
  }

  /** A generation of `model` ended here, so a provider slot is free: the longest waiter tries now. */
  freed(model: string): void {
    this.waiting.get(model)?.[0]?.wake();
  }

  /** Waiters now, for tests and the log. */
  size(model: string): number {
    return this.waiting.get(model)?.length ?? 0;
  }
}

/** The gateway's queue (one gateway per process: `infernet serve` or `infernet start --api`). */
export const slotQueue = new SlotQueue();
