import type { DownloadProgress } from "../../models/download.ts";
import type { ServeProgress } from "../../tui/state.ts";
import { abortReason } from "../../util/abort.ts";
import { AbortedError } from "../../util/errors.ts";
import { SERVE_PROGRESS_INTERVAL_MS } from "./models-protocol.ts";

/**
 * One model being added to the served set (fetched, verified, loaded), shared by every control
 * client that asked for it at the same time: one pull, its progress sent to each of them. The work
 * stops when the last of them goes away (the partial download resumes next time) or on `cancel`.
 */
export class ServeOperation {
  private readonly controller = new AbortController();
  private readonly listeners = new Set<(p: ServeProgress) => void>();
  private latest: ServeProgress | undefined;
  private sentAt = 0;
  private readonly done: Promise<void>;
  /** Resolves once the work has ended, however it ended. */
  readonly settled: Promise<void>;

  /** Starts `work` at once; it reports through `progress` and stops when its signal aborts. */
  constructor(work: (signal: AbortSignal, progress: (p: ServeProgress) => void) => Promise<void>) {
    this.done = work(this.controller.signal, (p) => this.report(p));
    // A failure reaches every client through `join`; none left is not an unhandled rejection.
    this.settled = this.done.catch(() => {});
  }

  /**
   * Follows the work until it ends: `onProgress` gets the latest progress at once, then each new
   * one. Rejects with the work's error, or AbortedError when `signal` aborts (the work goes on while
   * another client follows it).
   */
  join(onProgress: (p: ServeProgress) => void, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(abortReason(signal));
    this.listeners.add(onProgress);
    if (this.latest) onProgress(this.latest);
    return new Promise<void>((resolve, reject) => {
      const leave = () => {
        this.listeners.delete(onProgress);
        signal.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        leave();
        if (this.listeners.size === 0) this.cancel();
        reject(abortReason(signal));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.done.then(
        () => {
          leave();
          resolve();
        },
        (err: unknown) => {
          leave();
          reject(err);
        },
      );
    });
  }

  /** True once the work was told to stop: a new request for the model starts afresh instead of joining. */
  get stopping(): boolean {
    return this.controller.signal.aborted;
  }

  /** Stops the work (its followers get AbortedError). */
  cancel(): void {
    this.controller.abort(new AbortedError("no longer wanted"));
  }

  /** Sends a change of file or phase at once, more of the same at most every SERVE_PROGRESS_INTERVAL_MS. */
  private report(p: ServeProgress): void {
    const now = Date.now();
    const changed = p.phase !== this.latest?.phase || p.file !== this.latest?.file;
    this.latest = p;
    if (!changed && now - this.sentAt < SERVE_PROGRESS_INTERVAL_MS) return;
    this.sentAt = now;
    for (const listener of this.listeners) listener(p);
  }
}

/** A file's download progress as the dashboard's bar shows it. */
export function serveProgress(p: DownloadProgress): ServeProgress {
  return { phase: p.phase, file: p.file, doneBytes: p.done, totalBytes: p.total, bytesPerSecond: p.rate };
}
