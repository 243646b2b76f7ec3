/**
 * Bounded concurrency with a bounded FIFO queue: `acquire` takes a slot at once, waits in the queue,
 * or calls `full` (which throws) when the queue is full too. The returned release hands the slot to
 * the next waiter, once; releasing twice is harmless.
 */
export class Slots {
  private active = 0;
  private readonly waiting: { admit: () => void }[] = [];

  constructor(
    private readonly max: number,
    private readonly maxQueued: number,
  ) {}

  load(): { active: number; queued: number; maxConcurrent: number } {
    return { active: this.active, queued: this.waiting.length, maxConcurrent: this.max };
  }

  async acquire(signal: AbortSignal, full: () => never): Promise<() => void> {
    if (this.active < this.max) {
      this.active += 1;
      return this.releaser();
    }
    if (this.waiting.length >= this.maxQueued) full();
    signal.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        admit: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(waiter);
    });
    return this.releaser();
  }

  private releaser(): () => void {
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const next = this.waiting.shift();
      if (next) next.admit();
      else this.active -= 1;
    };
  }
}
