import { logger } from "../../util/logger.ts";

/**
 * Keeps models loaded between requests, evicting the least recently used idle ones when the
 * memory budget would be exceeded. Requests on one model run one at a time (one context sequence),
 * which also keeps greedy output bit-identical: no batching with other requests.
 */
const log = logger("runtime:llama:pool");

export interface PoolEntry<T> {
  readonly key: string;
  readonly value: T;
  readonly bytes: number;
}

interface Slot<T> {
  key: string;
  value: T | undefined;
  bytes: number;
  lastUsed: number;
  /** Leases held or waited for; an entry with users is never evicted. */
  users: number;
  /** Tail of the per-model FIFO lock. */
  tail: Promise<void>;
  loading: Promise<T> | undefined;
}

export interface Lease<T> extends Disposable {
  readonly value: T;
  release(): void;
}

export interface ModelPoolOptions<T> {
  /** Memory budget in bytes for all loaded entries together. */
  budgetBytes: number;
  /** Loads an entry; returns the value and its size in memory. */
  load(key: string, signal?: AbortSignal): Promise<{ value: T; bytes: number }>;
  /** Frees an entry's native memory. */
  unload(value: T): Promise<void>;
}

export class ModelPool<T> {
  private readonly slots = new Map<string, Slot<T>>();
  private clock = 0;

  constructor(private readonly options: ModelPoolOptions<T>) {}

  /** Total bytes of loaded entries. */
  get loadedBytes(): number {
    let total = 0;
    for (const s of this.slots.values()) if (s.value !== undefined) total += s.bytes;
    return total;
  }

  /** Keys of loaded entries, most recently used last. */
  loadedKeys(): string[] {
    return [...this.slots.values()]
      .filter((s) => s.value !== undefined)
      .sort((a, b) => a.lastUsed - b.lastUsed)
      .map((s) => s.key);
  }

  /**
   * Waits for exclusive use of the entry for `key`, loading it first if needed.
   * Release the lease (or `using` it) when the request is done.
   */
  async acquire(key: string, signal?: AbortSignal): Promise<Lease<T>> {
    let slot = this.slots.get(key);
    if (!slot) {
      slot = { key, value: undefined, bytes: 0, lastUsed: 0, users: 0, tail: Promise.resolve(), loading: undefined };
      this.slots.set(key, slot);
    }
    slot.users += 1;
    const previous = slot.tail;
    let unlock!: () => void;
    slot.tail = new Promise<void>((resolve) => {
      unlock = resolve;
    });
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      slot.users -= 1;
      slot.lastUsed = ++this.clock;
      unlock();
      if (slot.value === undefined && slot.users === 0) this.slots.delete(key);
    };
    try {
      await previous;
      signal?.throwIfAborted();
      const value = await this.ensureLoaded(slot, signal);
      slot.lastUsed = ++this.clock;
      return { value, release, [Symbol.dispose]: release };
    } catch (err) {
      release();
      throw err;
    }
  }

  private async ensureLoaded(slot: Slot<T>, signal?: AbortSignal): Promise<T> {
    if (slot.value !== undefined) return slot.value;
    slot.loading ??= (async () => {
      try {
        const loaded = await this.options.load(slot.key, signal);
        slot.value = loaded.value;
        slot.bytes = loaded.bytes;
        await this.evictFor(slot);
        return loaded.value;
      } finally {
        slot.loading = undefined;
      }
    })();
    return slot.loading;
  }

  /** Unloads idle entries, least recently used first, until the budget holds (or nothing idle is left). */
  private async evictFor(keep: Slot<T>): Promise<void> {
    const idle = [...this.slots.values()]
      .filter((s) => s !== keep && s.value !== undefined && s.users === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const s of idle) {
      if (this.loadedBytes <= this.options.budgetBytes) break;
      await this.unloadSlot(s);
    }
    if (this.loadedBytes > this.options.budgetBytes) {
      log.warn("models loaded exceed the memory budget", {
        loadedBytes: this.loadedBytes,
        budgetBytes: this.options.budgetBytes,
      });
    }
  }

  private async unloadSlot(s: Slot<T>): Promise<void> {
    const value = s.value;
    if (value === undefined) return;
    s.value = undefined;
    this.slots.delete(s.key);
    log.info("unloaded model", { key: s.key, bytes: s.bytes });
    await this.options.unload(value);
  }

  /** Unloads everything; waits for in-flight requests first. */
  async clear(): Promise<void> {
    const slots = [...this.slots.values()];
    await Promise.all(slots.map((s) => s.tail));
    for (const s of slots) await this.unloadSlot(s);
  }
}
