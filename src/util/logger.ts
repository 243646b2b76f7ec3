import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";

/**
 * One structured, namespaced logger. Lines are JSON, appended to `INFERNET_HOME/logs/infernet.log`
 * once `configureLogging` has run; at `debug` level they are also written to stderr. Library code
 * logs through this and never writes to the console itself.
 */
export type Level = "error" | "warn" | "info" | "debug";

const RANK: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

interface Sink {
  level: Level;
  fd: number | undefined;
  stderr: boolean;
}

const sink: Sink = { level: "warn", fd: undefined, stderr: false };

export interface LoggingOptions {
  level: Level;
  /** Directory for the log file; omitted means no file. */
  dir?: string;
  /** Also write to stderr (always at debug level). */
  stderr?: boolean;
}

export function configureLogging(options: LoggingOptions): void {
  closeLogging();
  sink.level = options.level;
  sink.stderr = options.stderr ?? options.level === "debug";
  if (options.dir) {
    mkdirSync(options.dir, { recursive: true, mode: 0o700 });
    sink.fd = openSync(join(options.dir, "infernet.log"), "a", 0o600);
  }
}

export function closeLogging(): void {
  if (sink.fd !== undefined) closeSync(sink.fd);
  sink.fd = undefined;
}

export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  enabled(level: Level): boolean;
}

export function logger(namespace: string): Logger {
  const write = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (RANK[level] > RANK[sink.level]) return;
    if (sink.fd === undefined && !sink.stderr) return;
    const line = `${JSON.stringify({ t: new Date().toISOString(), level, ns: namespace, msg, ...serialise(fields) })}\n`;
    if (sink.fd !== undefined) writeSync(sink.fd, line);
    if (sink.stderr) process.stderr.write(line);
  };
  return {
    error: (m, f) => write("error", m, f),
    warn: (m, f) => write("warn", m, f),
    info: (m, f) => write("info", m, f),
    debug: (m, f) => write("debug", m, f),
    enabled: (level) => RANK[level] <= RANK[sink.level],
  };
}

function serialise(fields: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!fields) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    out[k] = v instanceof Error ? { name: v.name, message: v.message, stack: v.stack } : v;
  }
  return out;
}
