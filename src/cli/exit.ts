import { IdempotencyConflictError, JobNotFoundError } from "../jobs/errors.ts";
import {
  AbortedError,
  ConfigError,
  DownloadError,
  FileNotFoundError,
  InfernetError,
  IntegrityError,
  InvalidInputError,
  NodeNotRunningError,
  NoProviderError,
  RuntimeError,
  TimeoutError,
  UnknownModelError,
  UsageError,
} from "../util/errors.ts";

/** Exit codes, one per kind of failure. Scripts may rely on these. */
export const EXIT = {
  ok: 0,
  internal: 1,
  usage: 2,
  notFound: 3,
  invalidInput: 4,
  download: 5,
  integrity: 6,
  runtime: 7,
  config: 8,
  noProvider: 9,
  notRunning: 10,
  timeout: 124,
  interrupted: 130,
} as const;

export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return EXIT.usage;
  if (err instanceof UnknownModelError || err instanceof FileNotFoundError || err instanceof JobNotFoundError) {
    return EXIT.notFound;
  }
  if (err instanceof InvalidInputError || err instanceof IdempotencyConflictError) return EXIT.invalidInput;
  if (err instanceof DownloadError) return EXIT.download;
  if (err instanceof IntegrityError) return EXIT.integrity;
  if (err instanceof RuntimeError) return EXIT.runtime;
  if (err instanceof ConfigError) return EXIT.config;
  if (err instanceof NoProviderError) return EXIT.noProvider;
  if (err instanceof NodeNotRunningError) return EXIT.notRunning;
  if (err instanceof TimeoutError) return EXIT.timeout;
  if (err instanceof AbortedError) return EXIT.interrupted;
  return EXIT.internal;
}

/**
 * The one line a user sees for a failure: what went wrong and what to do. Unexpected errors
 * (bugs) say so and point at the log; stacks only with INFERNET_LOG=debug.
 */
export function describeError(err: unknown, debug: boolean): string {
  if (err instanceof InfernetError) {
    const line = `infernet: ${err.message}${err.hint ? ` (${err.hint})` : ""}`;
    return debug && err.stack ? `${line}\n${err.stack}` : line;
  }
  const message = err instanceof Error ? err.message : String(err);
  const line = `infernet: internal error: ${message} (please report it; INFERNET_LOG=debug shows details)`;
  return debug && err instanceof Error && err.stack ? `${line}\n${err.stack}` : line;
}
