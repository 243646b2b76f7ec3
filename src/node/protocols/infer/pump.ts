import type { LengthPrefixedStream } from "@libp2p/utils";
import type { InferenceEvent } from "../../../runtime/engine.ts";
import { encode, writeFrames } from "../../wire.ts";
import { eventMessage } from "./messages.ts";

/**
 * Streams an engine's events to the client, one frame per event, coalescing transport writes: a frame
 * goes out at once when nothing was written in the last `COALESCE_MS`, otherwise it waits (at most that
 * long) and leaves with the frames produced meanwhile in one write. Each QUIC write costs ~0.1 ms of
 * main-thread time here, as much as a small model takes per token, so one write per token would slow
 * generation itself; a person reading a stream cannot see a few milliseconds. The first token and
 * `done` are never held back.
 */

/** Longest a frame waits to share a transport write with the next ones. */
export const COALESCE_MS = 4;
/** Encoded frames waiting beyond this go out at once, and reading the engine pauses until they are written. */
export const MAX_PENDING_BYTES = 256 * 1024;

/** `onDone` runs when the engine's `done` event arrives, before that frame is written. */
export async function pump(
  lp: LengthPrefixedStream,
  events: AsyncIterable<InferenceEvent>,
  signal: AbortSignal,
  onDone: () => void,
): Promise<void> {
  const pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let writing: Promise<void> | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let lastWrite = Number.NEGATIVE_INFINITY;
  let failed: { error: unknown } | undefined;

  const flush = async (): Promise<void> => {
    try {
      while (pending.length > 0) {
        const frames = pending.splice(0);
        pendingBytes = 0;
        lastWrite = performance.now();
        await writeFrames(lp, frames, { signal });
      }
    } catch (error) {
      failed ??= { error };
      pending.length = 0;
    } finally {
      writing = undefined;
    }
  };
  const start = () => {
    clearTimeout(timer);
    timer = undefined;
    writing ??= flush();
  };

  try {
    for await (const event of events) {
      if (failed) throw failed.error;
      if (event.type === "done") onDone();
      const frame = encode(eventMessage(event));
      pending.push(frame);
      pendingBytes += frame.byteLength;
      if (writing) {
        // The running flush takes this frame when its write completes.
        if (pendingBytes > MAX_PENDING_BYTES) await writing;
        continue;
      }
      const wait = lastWrite + COALESCE_MS - performance.now();
      if (event.type === "done" || pendingBytes > MAX_PENDING_BYTES || wait <= 0) start();
      else timer ??= setTimeout(start, wait);
    }
    if (pending.length > 0) start();
    while (writing) await writing;
    if (failed) throw failed.error;
  } finally {
    clearTimeout(timer);
  }
}
