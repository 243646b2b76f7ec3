import type { SingleKadDHT } from "@libp2p/kad-dht";

/** Helpers for provider lookups: a bounded task queue and waiting for the DHT to have peers. */

/** While the DHT routing table is empty, lookups check again this often. */
export const ROUTING_POLL_MS = 50;

/** Runs at most `limit` tasks at once; `idle()` waits until all have settled. */
export class TaskQueue {
  private running = 0;
  private readonly waiting: (() => Promise<void>)[] = [];
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly limit: number) {}

  add(task: () => Promise<void>): void {
    this.waiting.push(task);
    this.next();
  }

  async idle(): Promise<void> {
    while (this.inFlight.size || this.waiting.length) await Promise.allSettled([...this.inFlight]);
  }

  private next(): void {
    while (this.running < this.limit) {
      const task = this.waiting.shift();
      if (!task) return;
      this.running++;
      const p: Promise<void> = task()
        .catch(() => {})
        .finally(() => {
          this.running--;
          this.inFlight.delete(p);
          this.next();
        });
      this.inFlight.add(p);
    }
  }
}

/**
 * A node that has just dialled its bootstrap has an empty routing table until identify completes;
 * a lookup started then would find nothing. Waits until a DHT peer is known or `signal` aborts.
 */
export async function waitForRoutingPeers(dht: SingleKadDHT, signal: AbortSignal): Promise<void> {
  while (dht.routingTable.size === 0 && !signal.aborted) {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const t = setTimeout(done, ROUTING_POLL_MS);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
