import { mkdirSync, renameSync } from "node:fs";
import { dirname } from "node:path";
import { abortReason, sleep } from "../util/abort.ts";
import { AbortedError, DownloadError, errorMessage, IntegrityError, TimeoutError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import type { CatalogFile } from "./catalog.ts";
import { sha256File } from "./hash.ts";
import { acquireLock } from "./lock.ts";
import { bytesDone, discardPartial, freshState, loadState, partialPaths, removeState } from "./partial-state.ts";
import { type Source, sourcesFor, TransferFailure } from "./sources.ts";
import { transfer } from "./transfer.ts";

const log = logger("models:download");

/** Files at least this big are fetched over several ranged connections at once (when the server allows). */
export const PARALLEL_THRESHOLD_BYTES = 64 * 1024 * 1024;
/** Parallel connections when the caller does not say (the config's `downloadParts` normally does). */
export const DEFAULT_PARTS = 4;
/** A connection that delivers nothing (not even response headers) for this long is given up. */
export const STALL_TIMEOUT_MS = 30_000;
/** Attempts at one source while it keeps answering (a flaky link resumes; a dead one is left at once). */
export const MAX_ATTEMPTS_PER_SOURCE = 5;
/** Pause before retrying a source, multiplied by the attempt number. */
export const RETRY_DELAY_MS = 250;
/** Progress events are throttled to one per interval (plus the first and last). */
export const PROGRESS_INTERVAL_MS = 100;
/** The transfer rate is averaged over this window. */
export const RATE_WINDOW_MS = 5_000;

export interface DownloadProgress {
  /** Catalog file name. */
  file: string;
  /** `wait`: another process is downloading the same file; `download`: bytes arriving; `verify`: hashing. */
  phase: "wait" | "download" | "verify";
  /** The URL or mirror path the bytes come from. */
  source: string;
  done: number;
  total: number;
  /** Bytes per second over the last few seconds (0 until measured). */
  rate: number;
  /** Seconds left at the current rate; undefined until there is a rate. */
  etaSeconds: number | undefined;
}

export interface DownloadOptions {
  /** `INFERNET_MODEL_MIRROR`: a folder or http(s) URL holding files by name, tried first. */
  mirror?: string;
  /** Parallel ranged connections for large files (default DEFAULT_PARTS). */
  parts?: number;
  /** Size from which a file is split into parts (default PARALLEL_THRESHOLD_BYTES). */
  partThreshold?: number;
  /** Give up on a connection silent for this long (default STALL_TIMEOUT_MS). */
  stallTimeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (progress: DownloadProgress) => void;
  /**
   * Checked while holding the lock, before downloading: true means the file is already in place
   * (another process may have just finished it) and nothing is fetched.
   */
  isPresent?: () => Promise<boolean>;
}

export interface DownloadResult {
  path: string;
  sha256: string;
  size: number;
  /** Where the bytes came from; undefined when the file was already present. */
  source: string | undefined;
  /** Bytes fetched by this call (excluding what an earlier, interrupted call left). */
  transferred: number;
  /** Bytes already in the partial file when this call started. */
  resumedFrom: number;
  seconds: number;
}

/**
 * Downloads one catalog file to `dest`: the mirror first, then the public sources, each resumable.
 * The bytes go to `<dest>.partial` (never used as a model) and are renamed into place only after
 * the whole file's sha256 matches the catalog. A file with the wrong hash or size is deleted and the
 * next source tried. Holds `<dest>.lock` throughout, so concurrent pulls of one file queue up.
 */
export async function downloadFile(
  file: CatalogFile,
  dest: string,
  options: DownloadOptions = {},
): Promise<DownloadResult> {
  const started = performance.now();
  const { signal } = options;
  mkdirSync(dirname(dest), { recursive: true });
  const meter = new Meter(file, options.onProgress);
  await using _lock = await acquireLock(`${dest}.lock`, {
    ...(signal ? { signal } : {}),
    onWait: () => meter.phase("wait", "another infernet process", 0),
  });
  const result = (source: string | undefined, transferred: number, resumedFrom: number): DownloadResult => ({
    path: dest,
    sha256: file.sha256,
    size: file.size,
    source,
    transferred,
    resumedFrom,
    seconds: (performance.now() - started) / 1000,
  });
  if (await options.isPresent?.()) return result(undefined, 0, 0);

  const failures: Error[] = [];
  let transferred = 0;
  let resumedFrom: number | undefined;
  for (const source of sourcesFor(file, options.mirror ?? "")) {
    for (let attempt = 1; ; attempt++) {
      let state = loadState(dest, file.sha256, file.size);
      if (!state) {
        discardPartial(dest);
        state = freshState(file.sha256, file.size);
      }
      resumedFrom ??= bytesDone(state);
      if (bytesDone(state) > 0) log.info("resuming", { file: file.file, source: source.label, at: bytesDone(state) });
      meter.phase("download", source.label, bytesDone(state));
      let progressed = 0;
      let answered = false;
      try {
        await transfer({
          dest,
          state,
          source,
          parts: options.parts ?? DEFAULT_PARTS,
          partThreshold: options.partThreshold ?? PARALLEL_THRESHOLD_BYTES,
          stallTimeoutMs: options.stallTimeoutMs ?? STALL_TIMEOUT_MS,
          ...(signal ? { signal } : {}),
          onBytes: (delta) => {
            if (delta > 0) {
              progressed += delta;
              transferred += delta;
            }
            meter.add(delta);
          },
          onAnswer: () => {
            answered = true;
          },
        });
        await verifyAndPlace(file, dest, source, meter, signal);
        meter.finish();
        log.info("downloaded", { file: file.file, source: source.label, transferred });
        return result(source.label, transferred, resumedFrom);
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        if (err instanceof AbortedError || err instanceof TimeoutError) throw err;
        if (err instanceof IntegrityError) {
          discardPartial(dest);
          failures.push(err);
          log.warn("integrity failure", { source: source.label, err });
          break;
        }
        if (!(err instanceof TransferFailure)) throw localFailure(err, dest);
        log.warn("source failed", { source: source.label, attempt, err });
        // A source that answered (or sent bytes) before failing is flaky, not dead: resume from it.
        if (err.retryable && (progressed > 0 || answered) && attempt < MAX_ATTEMPTS_PER_SOURCE) {
          await sleep(RETRY_DELAY_MS * attempt, signal);
          continue;
        }
        failures.push(err);
        break;
      }
    }
  }
  throw allFailed(file, failures);
}

async function verifyAndPlace(
  file: CatalogFile,
  dest: string,
  source: Source,
  meter: Meter,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { partial } = partialPaths(dest);
  meter.phase("verify", source.label, 0);
  const actual = await sha256File(partial, { ...(signal ? { signal } : {}), onBytes: (n) => meter.set(n) });
  if (actual !== file.sha256) {
    throw new IntegrityError(
      `sha256 of ${file.file} from ${source.label} is ${actual}, expected ${file.sha256}; the file was deleted`,
    );
  }
  renameSync(partial, dest);
  removeState(dest);
}

function allFailed(file: CatalogFile, failures: Error[]): Error {
  const tried = failures.map((f) => f.message).join("; ");
  if (failures.some((f) => f instanceof IntegrityError)) {
    return new IntegrityError(`no source gave a valid ${file.file}: ${tried}`, {
      hint: "a source serves a different file than the catalog pins; check INFERNET_MODEL_MIRROR",
    });
  }
  return new DownloadError(`could not download ${file.file} (tried ${failures.length}): ${tried}`, {
    hint: `check the network, or set INFERNET_MODEL_MIRROR to a folder or http(s) URL that holds ${file.file}`,
  });
}

/** A failure on this machine (disk full, permissions): no other source would help. */
function localFailure(err: unknown, dest: string): Error {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (!code) return err instanceof Error ? err : new Error(String(err));
  return new DownloadError(`cannot write ${partialPaths(dest).partial}: ${errorMessage(err)}`, {
    hint: "check free disk space and the permissions of the models directory (INFERNET_MODELS_DIR)",
    cause: err,
  });
}

/** Turns byte counts into throttled progress events with a windowed rate and an ETA. */
class Meter {
  private current: DownloadProgress;
  private samples: { t: number; done: number }[] = [];
  private lastEmit = 0;

  constructor(
    file: CatalogFile,
    private readonly onProgress: ((p: DownloadProgress) => void) | undefined,
  ) {
    this.current = {
      file: file.file,
      phase: "download",
      source: "",
      done: 0,
      total: file.size,
      rate: 0,
      etaSeconds: undefined,
    };
  }

  phase(phase: DownloadProgress["phase"], source: string, done: number): void {
    this.current = { ...this.current, phase, source, done, rate: 0, etaSeconds: undefined };
    this.samples = [{ t: performance.now(), done }];
    this.emit(true);
  }

  add(delta: number): void {
    this.set(this.current.done + delta);
  }

  set(done: number): void {
    this.current.done = done;
    const now = performance.now();
    this.samples.push({ t: now, done });
    while (this.samples.length > 2 && now - (this.samples[0]?.t ?? now) > RATE_WINDOW_MS) this.samples.shift();
    this.emit(false);
  }

  finish(): void {
    this.emit(true);
  }

  private emit(force: boolean): void {
    if (!this.onProgress) return;
    const now = performance.now();
    if (!force && now - this.lastEmit < PROGRESS_INTERVAL_MS) return;
    this.lastEmit = now;
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (first && last && last.t > first.t) {
      this.current.rate = Math.max(0, ((last.done - first.done) * 1000) / (last.t - first.t));
      this.current.etaSeconds =
        this.current.rate > 0 ? (this.current.total - this.current.done) / this.current.rate : undefined;
    }
    this.onProgress({ ...this.current });
  }
}
