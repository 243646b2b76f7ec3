import { SHARD_STATES, type ShardState } from "../jobs/states.ts";
import type { JobEvent, JobSummary } from "../node/aggregator/api.ts";
import type { Output } from "./command.ts";
import { formatDuration } from "./progress.ts";

/**
 * The live view of a running job: one cell per shard when they fit the terminal (else buckets of
 * shards), then `12/20 shards verified, 2 reassigned`. On a TTY the line is redrawn in place; in a
 * log or a pipe a line is written only when the counts change, at most every
 * `PLAIN_LINE_INTERVAL_MS`, so a long job does not flood the log.
 */

/** Redraw the TTY line at most this often. */
export const REDRAW_INTERVAL_MS = 100;
/** Write a plain (non-TTY) progress line at most this often. */
export const PLAIN_LINE_INTERVAL_MS = 2_000;
/** Narrowest bar worth drawing; below this only the counts are shown. */
export const MIN_BAR_CELLS = 8;

/** One glyph per shard state; `reassigned` waits for a copy like `queued`. */
export const SHARD_GLYPHS: Readonly<Record<ShardState, string>> = {
  queued: "·",
  reassigned: "·",
  leased: "▸",
  running: "▸",
  returned: "▪",
  verified: "✓",
  failed: "×",
};

/** How bad a state is when several shards share a cell: the worst one shows. */
const SEVERITY: Readonly<Record<ShardState, number>> = {
  verified: 0,
  returned: 1,
  running: 2,
  leased: 2,
  queued: 3,
  reassigned: 3,
  failed: 4,
};

/** The state a code from the watch stream stands for (an unknown code counts as queued). */
export function shardState(code: number): ShardState {
  return SHARD_STATES[code] ?? "queued";
}

/**
 * `cells` glyphs for the shard states: one per shard when they fit, else each cell stands for a run
 * of consecutive shards and shows the least advanced state among them (a failure shows first).
 */
export function renderShards(states: Uint8Array, cells: number): string {
  const n = states.length;
  if (n === 0 || cells <= 0) return "";
  if (n <= cells) return Array.from(states, (c) => SHARD_GLYPHS[shardState(c)]).join("");
  let out = "";
  for (let cell = 0; cell < cells; cell++) {
    const from = Math.floor((cell * n) / cells);
    const to = Math.floor(((cell + 1) * n) / cells);
    let worst: ShardState = "verified";
    for (let i = from; i < to; i++) {
      const s = shardState(states[i] as number);
      if (SEVERITY[s] > SEVERITY[worst]) worst = s;
    }
    out += SHARD_GLYPHS[worst];
  }
  return out;
}

/** `12/20 shards verified, 2 reassigned` (plus `late` when the aggregator expects to miss the deadline). */
export function progressCounts(job: JobSummary): string {
  const parts = [`${job.shardsVerified}/${job.shardCount} shards verified`];
  if (job.retries > 0) parts.push(`${job.retries} reassigned`);
  if (job.late) parts.push("late for its deadline");
  return parts.join(", ");
}

/** The whole progress line for a terminal `columns` wide: `[cells] counts  elapsed`. */
export function renderProgressLine(job: JobSummary, states: Uint8Array, columns: number, elapsedMs: number): string {
  const tail = `${progressCounts(job)}  ${formatDuration(elapsedMs / 1000)}`;
  const room = columns - 1 - tail.length - 3;
  const cells = Math.min(states.length, room);
  if (cells < Math.min(MIN_BAR_CELLS, states.length) || states.length === 0) {
    return tail.slice(0, Math.max(0, columns - 1));
  }
  return `[${renderShards(states, cells)}] ${tail}`;
}

/** Draws a job's watch events on `out`. */
export class JobProgressView {
  private lastDraw = Number.NEGATIVE_INFINITY;
  private lastPlain = "";
  private drawn = false;
  private latest: Extract<JobEvent, { type: "progress" }> | undefined;

  constructor(
    private readonly out: Output,
    private readonly startedAt: number,
    private readonly now: () => number = Date.now,
  ) {}

  update(event: JobEvent): void {
    if (event.type === "progress") this.latest = event;
    const states = event.type === "progress" ? event.shards : (this.latest?.shards ?? new Uint8Array());
    const final = event.type === "finished";
    const at = this.now();
    if (this.out.isTTY) {
      if (!final && at - this.lastDraw < REDRAW_INTERVAL_MS) return;
      this.lastDraw = at;
      this.out.write(`\r${renderProgressLine(event.job, states, this.out.columns, at - this.startedAt)}\x1b[K`);
      this.drawn = true;
      return;
    }
    const counts = progressCounts(event.job);
    if (counts === this.lastPlain || (!final && at - this.lastDraw < PLAIN_LINE_INTERVAL_MS)) return;
    this.lastDraw = at;
    this.lastPlain = counts;
    this.out.write(`${counts}  ${formatDuration((at - this.startedAt) / 1000)}\n`);
  }

  /** A line of its own (a reconnect, a warning) without breaking the live line. */
  note(text: string): void {
    this.clear();
    this.out.write(`${text}\n`);
  }

  /** Ends the live line so what follows starts on a fresh one. */
  finish(): void {
    if (this.drawn) this.out.write("\n");
    this.drawn = false;
  }

  private clear(): void {
    if (this.drawn) this.out.write("\r\x1b[K");
    this.drawn = false;
  }
}
