import { AbortedError, TimeoutError } from "./errors.ts";

/** Throws the typed error for an aborted signal (a deadline becomes `TimeoutError`). */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  throw abortReason(signal);
}

export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof AbortedError || reason instanceof TimeoutError) return reason;
  if (reason instanceof DOMException && reason.name === "TimeoutError") return new TimeoutError("the deadline passed");
  return new AbortedError("cancelled");
}
