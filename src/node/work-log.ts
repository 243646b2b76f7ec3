/**
 * What a provider is computing for other peers and what it finished last: one entry per request or
 * shard, with its progress, for the dashboard's Jobs panel. Bounded: running entries are bounded by
 * the provider's slots and queue, finished ones by a ring of `MAX_FINISHED_WORK`, so a provider that
 * serves for months holds the same few entries. Recording is a field update on the serving path.
 */

/** Finished entries kept, newest first. */
export const MAX_FINISHED_WORK = 50;
/** An error kept with a failed entry is cut to this many characters. */
const MAX_WORK_ERROR_CHARS = 200;

/** One request or shard this node computes (or computed) for another peer. */
export interface WorkView {
  id: number;
  kind: "request" | "shard";
  model: string;
  /** Who asked: a client (request) or an aggregator (shard). */
  peer: string;
  /** What `done` and `total` count: tokens generated, or records of a shard. */
  unit: "tokens" | "records";
  done: number;
  /** Known for shards (records) and requests with a token limit. */
  total: number | undefined;
  startedAt: number;
  endedAt: number | undefined;
  outcome: "running" | "done" | "failed";
  error: string | undefined;
}

export interface WorkStart {
  kind: WorkView["kind"];
  model: string;
  peer: string;
  unit: WorkView["unit"];
  total: number | undefined;
}

/** One running entry: `add` as units are produced, then `end` once (later calls do nothing). */
export interface WorkEntry {
  add(units: number): void;
  /** Sets the units done so far (a shard's records arrive as ranges). */
  reach(done: number): void;
  end(error?: unknown): void;
}

export class WorkLog {
  private nextId = 1;
  private readonly running = new Map<number, WorkView>();
  private finished: WorkView[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  begin(start: WorkStart): WorkEntry {
    const view: WorkView = {
      id: this.nextId++,
      ...start,
      done: 0,
      startedAt: this.now(),
      endedAt: undefined,
      outcome: "running",
      error: undefined,
    };
    this.running.set(view.id, view);
    return {
      add: (units) => {
        view.done += units;
      },
      reach: (done) => {
        view.done = Math.max(view.done, done);
      },
      end: (error) => {
        if (!this.running.delete(view.id)) return;
        view.endedAt = this.now();
        view.outcome = error === undefined ? "done" : "failed";
        if (error !== undefined) view.error = describe(error);
        this.finished.unshift(view);
        if (this.finished.length > MAX_FINISHED_WORK) this.finished.length = MAX_FINISHED_WORK;
      },
    };
  }

  /** Running entries (oldest first: the one closest to done on top), then finished ones, newest first; copies. */
  entries(limit: number): WorkView[] {
    return [...this.running.values(), ...this.finished].slice(0, limit).map((w) => ({ ...w }));
  }
}

/** Running entries of several logs first, then their finished entries, newest first, at most `limit`. */
export function mergeWork(lists: WorkView[][], limit: number): WorkView[] {
  const all = lists.flat();
  const running = all.filter((w) => w.outcome === "running").sort((a, b) => a.startedAt - b.startedAt);
  const finished = all.filter((w) => w.outcome !== "running").sort((a, b) => (b.endedAt ?? 0) - (a.endedAt ?? 0));
  return [...running, ...finished].slice(0, limit);
}

function describe(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.length > MAX_WORK_ERROR_CHARS ? `${text.slice(0, MAX_WORK_ERROR_CHARS - 1)}…` : text;
}
