import type { PeerId } from "@libp2p/interface";
import { JobNotFoundError } from "../../../jobs/errors.ts";
import { abortReason, sleep } from "../../../util/abort.ts";
import { TimeoutError } from "../../../util/errors.ts";
import type { JobEvent } from "../../aggregator/api.ts";
import { RemoteJobError } from "./errors.ts";
import type { JobErrorCode } from "./messages.ts";

/**
 * Following a job to its end across aggregator restarts and lost connections: a watch that breaks is
 * opened again, with backoff, for as long as the aggregator comes back within the reconnect window.
 * Each new watch starts with a full `progress` event, so nothing is lost between them. The dial goes
 * through the connection manager, which redials the addresses the peer store holds for the
 * aggregator (the caller adds them before).
 */

/** Give up when no watch could be (re)opened for this long. */
export const RECONNECT_WINDOW_MS = 60_000;
/** First wait before reopening a watch; it doubles up to `MAX_BACKOFF_MS`. */
export const FIRST_BACKOFF_MS = 250;
export const MAX_BACKOFF_MS = 5_000;

/** Refusals another try cannot change. */
const FINAL_CODES: readonly JobErrorCode[] = ["unsupported-version", "bad-request"];

export type FinishedEvent = Extract<JobEvent, { type: "finished" }>;

export interface FollowOptions {
  signal?: AbortSignal;
  /** Every event, in order; after a reconnection the first is a full `progress`. */
  onEvent: (event: JobEvent) => void;
  /** A watch broke (`error` says why) and attempt number `attempt` (from 1) will be made. */
  onReconnect?: (attempt: number, error: Error) => void;
  /** Default `RECONNECT_WINDOW_MS`. */
  reconnectWindowMs?: number;
}

/** What following a job needs: the service's `watch`. */
export interface Watcher {
  watch(peer: PeerId, jobId: string, options?: { signal?: AbortSignal }): AsyncIterable<JobEvent>;
}

/**
 * Watches `jobId` on `peer` until it finishes and returns the `finished` event. Throws
 * `JobNotFoundError` at once, the caller's abort as `AbortedError` (or `TimeoutError`), and, once
 * the reconnect window has passed with no watch reopened, the last error (or a `TimeoutError` when
 * the window ran out during a try).
 */
export async function followJob(
  service: Watcher,
  peer: PeerId,
  jobId: string,
  options: FollowOptions,
): Promise<FinishedEvent> {
  const { signal } = options;
  const windowMs = options.reconnectWindowMs ?? RECONNECT_WINDOW_MS;
  let brokenSince = performance.now();
  let attempt = 0;
  let last: Error | undefined;
  for (;;) {
    // Each try is also cut off when the window passes, so a dial that hangs cannot outlast it.
    const tryCall = new AbortController();
    const onAbort = () => tryCall.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    const leftMs = Math.max(0, windowMs - (performance.now() - brokenSince));
    const windowTimer = setTimeout(() => {
      const why = last ? `; the last failure: ${last.message}` : "";
      tryCall.abort(new TimeoutError(`no watch of job ${jobId} on ${peer} could be opened for ${windowMs} ms${why}`));
    }, leftMs);
    let connected = false;
    try {
      for await (const event of service.watch(peer, jobId, { signal: tryCall.signal })) {
        if (!connected) clearTimeout(windowTimer);
        connected = true;
        attempt = 0;
        options.onEvent(event);
        if (event.type === "finished") return event;
      }
      throw new RemoteJobError("protocol", peer.toString(), `the watch of job ${jobId} ended before it finished`);
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      if (!(err instanceof Error) || final(err)) throw err;
      // The window passed during this try.
      if (tryCall.signal.aborted) throw err;
      last = err;
      if (connected) brokenSince = performance.now();
      const delay = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** attempt);
      if (performance.now() + delay - brokenSince > windowMs) throw err;
      attempt += 1;
      options.onReconnect?.(attempt, err);
      await sleep(delay, signal);
    } finally {
      clearTimeout(windowTimer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

function final(err: Error): boolean {
  if (err instanceof JobNotFoundError) return true;
  return err instanceof RemoteJobError && FINAL_CODES.includes(err.code);
}
