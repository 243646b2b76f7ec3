import { existsSync } from "node:fs";
import { open } from "node:fs/promises";
import { abortReason } from "../util/abort.ts";
import { IntegrityError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import { type Part, type PartialState, partialPaths, saveState, splitParts } from "./partial-state.ts";
import { networkMessage, type Opened, type Source, TransferFailure } from "./sources.ts";

const log = logger("models:transfer");

/** Parts smaller than this are not worth a connection of their own. */
export const MIN_PART_BYTES = 256 * 1024;
/** Received bytes are written to disk in blocks of this size (and whenever a transfer stops). */
export const WRITE_BUFFER_BYTES = 1024 * 1024;
/** How often the partial state is written while bytes arrive, so a crash loses little. */
export const STATE_SAVE_INTERVAL_MS = 1_000;

export interface TransferOptions {
  dest: string;
  /** Updated in place as bytes land; saved beside the partial file. */
  state: PartialState;
  source: Source;
  /** Parallel ranged connections for a fresh download of at least `partThreshold` bytes. */
  parts: number;
  partThreshold: number;
  /** Fail when no byte arrives for this long (including waiting for response headers). */
  stallTimeoutMs: number;
  signal?: AbortSignal;
  /** Bytes received (negative when a source forces a restart and earlier bytes are dropped). */
  onBytes: (delta: number) => void;
  /** Called when the source answers a request: it is alive, so a failure after this is worth a retry. */
  onAnswer?: () => void;
}

/**
 * Fills `<dest>.partial` from one source, resuming whatever the state says is already there. Large
 * fresh downloads are split into ranged parts written at their offsets into one preallocated file;
 * each part resumes on its own. Throws `TransferFailure` / `IntegrityError` for the source, or the
 * abort reason when `signal` fires; in every case the state on disk matches the bytes on disk.
 */
export async function transfer(options: TransferOptions): Promise<void> {
  const { dest, state, source } = options;
  const { partial } = partialPaths(dest);
  const doneBefore = state.parts.reduce((s, p) => s + p.done, 0);
  if (doneBefore === 0 && source.parallel && state.size >= options.partThreshold && options.parts > 1) {
    const count = Math.min(options.parts, Math.ceil(state.size / MIN_PART_BYTES));
    state.parts = splitParts(state.size, count);
  }
  const pending = state.parts.filter((p) => p.done < p.end - p.start);
  if (pending.length === 0) return;

  await using handle = await open(partial, existsSync(partial) ? "r+" : "w+", 0o644);
  if (state.parts.length > 1) await handle.truncate(state.size);
  saveState(dest, state);

  const controller = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
  const saver = setInterval(() => saveState(dest, state), STATE_SAVE_INTERVAL_MS);

  const fail = (err: unknown): never => {
    if (options.signal?.aborted) throw abortReason(options.signal);
    if (err instanceof TransferFailure || err instanceof IntegrityError) throw err;
    const stalled = controller.signal.reason instanceof StallError ? controller.signal.reason : undefined;
    if (stalled) throw new TransferFailure(`${source.label}: ${stalled.message}`, true, err);
    throw new TransferFailure(`${source.label}: ${networkMessage(err)}`, true, err);
  };

  const watch = () => new Watchdog(options.stallTimeoutMs, controller);

  const pump = async (part: Part, opened: Opened, dog: Watchdog) => {
    const reader = opened.body.getReader();
    // Network chunks are ~100 kB; gathering them into larger writes halves the time spent in syscalls.
    const buffer = Buffer.allocUnsafe(WRITE_BUFFER_BYTES);
    let buffered = 0;
    const flush = async () => {
      if (buffered === 0) return;
      await handle.write(buffer, 0, buffered, part.start + part.done);
      part.done += buffered;
      buffered = 0;
    };
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        dog.kick();
        const room = part.end - part.start - part.done - buffered;
        const n = Math.min(room, value.byteLength);
        if (buffered + n > buffer.length) await flush();
        if (n > buffer.length) {
          await handle.write(value, 0, n, part.start + part.done);
          part.done += n;
        } else {
          buffer.set(value.subarray(0, n), buffered);
          buffered += n;
        }
        // Progress counts bytes as they arrive; the state (part.done) only what is on disk.
        options.onBytes(n);
        if (value.byteLength > room) {
          throw new IntegrityError(`${source.label} sent more than the ${state.size} bytes the catalog says`);
        }
      }
    } finally {
      dog.stop();
      reader.releaseLock();
      // Whatever arrived before a failure or an abort is kept, so a resume does not fetch it again.
      await flush();
    }
    const want = part.end - part.start;
    if (part.done < want) {
      throw new TransferFailure(
        `${source.label}: connection closed after ${part.start + part.done} of ${state.size} bytes`,
        true,
      );
    }
  };

  const openPart = async (part: Part, dog: Watchdog) => {
    dog.kick();
    const opened = await source.open(part.start + part.done, part.end, signal);
    options.onAnswer?.();
    return opened;
  };

  try {
    const [first, ...rest] = pending as [Part, ...Part[]];
    const firstDog = watch();
    let opened: Opened;
    try {
      opened = await openPart(first, firstDog);
    } catch (err) {
      firstDog.stop();
      return fail(err);
    }
    if (opened.offset !== first.start + first.done) {
      // The server ignored Range and sends the whole file: start over as one part.
      log.info("range ignored, restarting", { source: source.label, had: doneBefore });
      options.onBytes(-state.parts.reduce((s, p) => s + p.done, 0));
      state.parts = [{ start: 0, end: state.size, done: 0 }];
      await handle.truncate(0);
      saveState(dest, state);
      await pump(state.parts[0] as Part, opened, firstDog).catch(fail);
      return;
    }
    const tasks = [
      pump(first, opened, firstDog),
      ...rest.map(async (part) => {
        const dog = watch();
        try {
          const o = await openPart(part, dog);
          if (o.offset !== part.start + part.done) {
            await o.body.cancel();
            throw new TransferFailure(`${source.label}: honoured one Range request but not another`, false);
          }
          await pump(part, o, dog);
        } finally {
          dog.stop();
        }
      }),
    ];
    // One failed part stops the others; their progress so far is kept in the state.
    const results = await Promise.allSettled(
      tasks.map((t) =>
        t.catch((err: unknown) => {
          controller.abort(new SiblingFailed());
          throw err;
        }),
      ),
    );
    if (results.some((r) => r.status === "rejected")) fail(pickCause(results, controller));
    await handle.datasync();
  } finally {
    clearInterval(saver);
    saveState(dest, state);
  }
}

/** The first failure that is not merely a consequence of another part failing. */
function pickCause(results: PromiseSettledResult<void>[], controller: AbortController): unknown {
  const reasons = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
  const real = reasons.find((r) => r instanceof TransferFailure || r instanceof IntegrityError);
  if (real) return real;
  if (controller.signal.reason instanceof StallError) return controller.signal.reason;
  return reasons.find((r) => !(r instanceof SiblingFailed)) ?? reasons[0];
}

class StallError extends Error {}
class SiblingFailed extends Error {}

/** Aborts the transfer when no byte (or no response) arrives for `ms`. */
class Watchdog {
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly ms: number,
    private readonly controller: AbortController,
  ) {}

  kick(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (!this.controller.signal.aborted) {
        this.controller.abort(new StallError(`no data for ${(this.ms / 1000).toFixed(1)} s`));
      }
    }, this.ms);
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}
