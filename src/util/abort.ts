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

/** Waits `ms`; rejects at once with the typed abort error when `signal` aborts first (or already has). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
