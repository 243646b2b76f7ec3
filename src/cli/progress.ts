import type { DownloadProgress } from "../models/download.ts";
import type { Output } from "./command.ts";

/** Redraw the TTY line at most this often. */
const REDRAW_INTERVAL_MS = 100;
/** Width of the bar itself, in cells, when the terminal is wide enough. */
const BAR_CELLS = 24;
/** Narrowest bar worth drawing. */
const MIN_BAR_CELLS = 6;

const UNITS = ["B", "kB", "MB", "GB", "TB"] as const;

/** Bytes in decimal units, as download tools and model hubs show them: "1.2 MB". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** "42s", "3m05s", "1h02m". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * Download progress on a terminal: one line redrawn in place with `\r` (bar, %, bytes, rate, ETA)
 * when the output is a TTY; otherwise only a plain line per finished file, so logs stay readable.
 */
export class ProgressBar {
  private lastDraw = 0;
  private drawn = false;
  private readonly started = new Map<string, { at: number; from: number }>();
  private readonly finished = new Set<string>();
  private readonly waited = new Set<string>();

  constructor(
    private readonly out: Output,
    /** What is being fetched, e.g. the model name. */
    private readonly label: string,
  ) {}

  update(p: DownloadProgress): void {
    if (p.phase === "wait") {
      if (this.waited.has(p.file)) return;
      this.waited.add(p.file);
      this.line(`${this.label}: waiting for another infernet process downloading ${p.file}`);
      return;
    }
    if (p.phase === "download" && !this.started.has(p.file)) {
      this.started.set(p.file, { at: performance.now(), from: p.done });
    }
    if (p.phase === "verify" && p.done >= p.total) {
      if (this.finished.has(p.file)) return;
      this.finished.add(p.file);
      this.line(this.summary(p));
      return;
    }
    if (!this.out.isTTY) return;
    const now = performance.now();
    if (now - this.lastDraw < REDRAW_INTERVAL_MS) return;
    this.lastDraw = now;
    this.out.write(`\r${this.render(p)}\x1b[K`);
    this.drawn = true;
  }

  /** Erases the live line (before other output goes to the same terminal). */
  clear(): void {
    if (this.drawn) this.out.write("\r\x1b[K");
    this.drawn = false;
  }

  /** The live line for one progress event, fitted to the terminal width. */
  render(p: DownloadProgress): string {
    const pct = p.total > 0 ? Math.min(100, (p.done / p.total) * 100) : 0;
    const verb = p.phase === "verify" ? "verifying" : "pulling";
    const head = `${verb} ${this.label} ${p.file}`;
    const tail =
      p.phase === "verify"
        ? `${pct.toFixed(0).padStart(3)}%`
        : [
            `${pct.toFixed(0).padStart(3)}%`,
            `${formatBytes(p.done)}/${formatBytes(p.total)}`,
            p.rate > 0 ? formatRate(p.rate) : "",
            p.etaSeconds !== undefined ? `ETA ${formatDuration(p.etaSeconds)}` : "",
          ]
            .filter(Boolean)
            .join("  ");
    const room = this.out.columns - 1 - head.length - tail.length - 4;
    const cells = Math.min(BAR_CELLS, room);
    if (cells < MIN_BAR_CELLS) return `${head}  ${tail}`.slice(0, Math.max(0, this.out.columns - 1));
    const full = Math.round((pct / 100) * cells);
    return `${head} [${"#".repeat(full)}${"-".repeat(cells - full)}] ${tail}`;
  }

  private summary(p: DownloadProgress): string {
    const start = this.started.get(p.file);
    const seconds = start ? (performance.now() - start.at) / 1000 : 0;
    const fetched = start ? p.total - start.from : 0;
    const resumed = start && start.from > 0 ? `, resumed at ${formatBytes(start.from)}` : "";
    const speed = seconds > 0 && fetched > 0 ? `, ${formatRate(fetched / seconds)}` : "";
    const took = seconds < 10 ? seconds.toFixed(2) : seconds.toFixed(0);
    return `${this.label}: ${p.file} ${formatBytes(p.total)} verified (from ${p.source}, ${took}s${speed}${resumed})`;
  }

  private line(text: string): void {
    this.clear();
    this.out.write(`${text}\n`);
  }
}

/** An `onProgress` callback that draws a `ProgressBar` on `out` (stderr, normally). */
export function progressReporter(out: Output, label: string): (p: DownloadProgress) => void {
  const bar = new ProgressBar(out, label);
  return (p) => bar.update(p);
}
