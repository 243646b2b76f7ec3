/**
 * Which providers the aggregator leaves alone for a while, and for how long. A provider that failed
 * is skipped for a time that doubles with each failure in a row (up to a cap) and is forgiven by its
 * next success; a busy one is skipped briefly; one that sent a bad result waits longest.
 *
 * A provider that vanished (went silent, its stream broke) is also suspect until it signs a new
 * capability record: a live provider re-announces within seconds (its load changes), a dead one
 * never does, so its leftover record (valid for minutes) stops drawing copies into the void.
 */

/** First pause after a lost copy (provider vanished, silent, stream broke). */
export const BACKOFF_BASE_MS = 1_000;
/** Longest pause. */
export const BACKOFF_MAX_MS = 60_000;
/** Pause after "busy": its queue is full, it is not broken. */
export const BUSY_BACKOFF_MS = 500;
/** A bad result (malformed, wrong shape) starts at this pause. */
export const SEVERE_BACKOFF_MS = 30_000;

export type FailureKind = "lost" | "busy" | "severe";

export class Backoff {
  private readonly until = new Map<string, number>();
  private readonly streak = new Map<string, number>();
  /** End of the pause of the provider's last counted failure. */
  private readonly incident = new Map<string, number>();
  /** Providers lost at this time, cleared by a record issued after it. */
  private readonly suspect = new Map<string, number>();

  failed(provider: string, now: number, kind: FailureKind): void {
    if (kind === "busy") {
      this.until.set(provider, Math.max(this.until.get(provider) ?? 0, now + BUSY_BACKOFF_MS));
      return;
    }
    if (kind === "lost") this.suspect.set(provider, now);
    const base = kind === "severe" ? SEVERE_BACKOFF_MS : BACKOFF_BASE_MS;
    // Copies leased before the pause, failing during it (a vanished provider's whole batch at once):
    // one incident, not a failure in a row each. A severe one still gets its longer pause.
    const incident = this.incident.get(provider) ?? 0;
    if (incident > now) {
      if (kind === "severe") this.pause(provider, Math.max(incident, now + base));
      return;
    }
    const n = (this.streak.get(provider) ?? 0) + 1;
    this.streak.set(provider, n);
    this.pause(provider, now + Math.min(BACKOFF_MAX_MS, base * 2 ** (n - 1)));
  }

  private pause(provider: string, until: number): void {
    this.incident.set(provider, until);
    this.until.set(provider, Math.max(this.until.get(provider) ?? 0, until));
  }

  succeeded(provider: string): void {
    this.streak.delete(provider);
    this.incident.delete(provider);
    this.suspect.delete(provider);
  }

  /** Providers still paused at `now`, or suspect with no record issued since (`issuedAt` by peer). */
  excluded(now: number, issuedAt: (provider: string) => number | undefined = () => undefined): string[] {
    const out: string[] = [];
    for (const [provider, lostAt] of this.suspect) {
      if ((issuedAt(provider) ?? 0) > lostAt) this.suspect.delete(provider);
      else out.push(provider);
    }
    for (const [provider, until] of this.until) {
      if (until <= now) this.until.delete(provider);
      else if (!out.includes(provider)) out.push(provider);
    }
    return out;
  }
}
