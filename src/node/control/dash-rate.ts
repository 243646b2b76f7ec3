/**
 * What a provider produced over the last minute (tokens generated, tensor outputs computed), for the
 * dashboard's rate. Counts go into one-second buckets in a fixed ring, so memory stays constant
 * however much flows through, and adding is O(1) on the serving path.
 */

/** The window the rate is averaged over. */
export const RATE_WINDOW_MS = 60_000;
/** Width of one bucket of the ring. */
export const RATE_BUCKET_MS = 1_000;
const BUCKETS = RATE_WINDOW_MS / RATE_BUCKET_MS;

export class RateMeter {
  private readonly counts = new Float64Array(BUCKETS);
  /** The bucket number (time / bucket width) each slot holds, so stale slots are recognised. */
  private readonly slots = new Float64Array(BUCKETS).fill(-1);

  constructor(private readonly now: () => number = Date.now) {}

  add(units: number): void {
    const bucket = Math.floor(this.now() / RATE_BUCKET_MS);
    const slot = bucket % BUCKETS;
    if (this.slots[slot] !== bucket) {
      this.slots[slot] = bucket;
      this.counts[slot] = 0;
    }
    this.counts[slot] = (this.counts[slot] ?? 0) + units;
  }

  /** Units per second over the last `RATE_WINDOW_MS`; undefined when nothing ran in it. */
  perSecond(): number | undefined {
    const current = Math.floor(this.now() / RATE_BUCKET_MS);
    let total = 0;
    let any = false;
    for (let slot = 0; slot < BUCKETS; slot++) {
      const bucket = this.slots[slot] ?? -1;
      if (bucket > current - BUCKETS && bucket <= current) {
        total += this.counts[slot] ?? 0;
        any = true;
      }
    }
    return any ? total / (RATE_WINDOW_MS / 1000) : undefined;
  }
}
