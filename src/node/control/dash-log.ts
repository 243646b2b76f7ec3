import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import type { LogLine } from "../../tui/state.ts";
import { LOG_TAIL_LINES, MAX_LOG_MSG_CHARS, MAX_LOG_TAIL_BYTES } from "./dash-protocol.ts";

/**
 * The newest lines of the node's own log (`INFERNET_HOME/logs/infernet.log`, JSON lines written by
 * util/logger.ts), read from a bounded window at the end of the file. The file grows forever and may
 * hold lines from other processes of the same home, so nothing is read whole, and a line that is
 * not the logger's JSON is skipped rather than trusted.
 */

const LineSchema = z.object({
  t: z.string().max(64),
  level: z.string().max(16),
  ns: z.string().max(128),
  msg: z.string(),
});

export function logPath(home: string): string {
  return join(home, "logs", "infernet.log");
}

export class LogTail {
  private cached: { size: number; mtimeMs: number; lines: LogLine[] } | undefined;

  constructor(private readonly path: string) {}

  /** The newest `LOG_TAIL_LINES` lines, oldest first; empty when there is no log yet. */
  read(): LogLine[] {
    let fd: number;
    try {
      fd = openSync(this.path, "r");
    } catch {
      return [];
    }
    try {
      const { size, mtimeMs } = fstatSync(fd);
      // Polled every second: an unchanged file is not read again.
      if (this.cached && this.cached.size === size && this.cached.mtimeMs === mtimeMs) return this.cached.lines;
      const start = Math.max(0, size - MAX_LOG_TAIL_BYTES);
      const buffer = Buffer.alloc(size - start);
      const got = readSync(fd, buffer, 0, buffer.length, start);
      const text = buffer.subarray(0, got).toString("utf8");
      const all = text.split("\n");
      // A window that starts mid-file starts mid-line: its first piece is not a whole line.
      if (start > 0) all.shift();
      const lines = parseLines(all.slice(-LOG_TAIL_LINES - 1));
      this.cached = { size, mtimeMs, lines };
      return lines;
    } finally {
      closeSync(fd);
    }
  }
}

export function parseLines(raw: string[]): LogLine[] {
  const lines: LogLine[] = [];
  for (const line of raw) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      continue;
    }
    const parsed = LineSchema.safeParse(value);
    if (!parsed.success) continue;
    const { t, level, ns, msg } = parsed.data;
    lines.push({ t, level, ns, msg: msg.length > MAX_LOG_MSG_CHARS ? `${msg.slice(0, MAX_LOG_MSG_CHARS - 1)}…` : msg });
  }
  return lines.slice(-LOG_TAIL_LINES);
}
