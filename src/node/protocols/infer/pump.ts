import { encode, type FrameSink, writeFrames } from "../../wire.ts";
import { eventMessage, type WireEvent } from "./messages.ts";

/**
 * Streams an engine's events to the client, coalescing: an event goes out at once when nothing was
 * written in the last `COALESCE_MS`, otherwise it waits (at most that long) and leaves with the events
 * produced meanwhile in one write, consecutive tokens merged into one token frame (text and ids
 * concatenated, so the client still knows exactly which ids produced which text). Why: node-llama-cpp drives each
 * token from the JS thread, so everything a write costs there (the native QUIC write, its completion,
 * the peer's read) delays the next token. Measured on stories260k (~1,500 tokens/s, 2 cores), one
 * write per token made remote generation ~15% slower than local; a write at most every 25 ms costs a
 * few percent (bench/remote.ts). A model slower than 40 tokens/s never waits, and 25 ms bursts still
 * read as a smooth stream. The first token, a bill and `done` are never held back.
 */

/** Longest a frame waits to share a transport write with the next ones. */
export const COALESCE_MS = 25;
/** Encoded frames waiting beyond this go out at once, and reading the engine pauses until they are written. */
export const MAX_PENDING_BYTES = 256 * 1024;

/** Tokens waiting to leave as one frame, or a frame already encoded (tensors, done). */
type Pending = { kind: "tokens"; text: string; tokens: number[] } | { kind: "frame"; bytes: Uint8Array };

/** Rough encoded size of a merged token frame, for the pending-bytes bound. */
const TOKEN_ID_BYTES = 5;

function encodePending(p: Pending): Uint8Array {
  return p.kind === "frame" ? p.bytes : encode(eventMessage({ type: "token", text: p.text, tokens: p.tokens }));
}

/** `onDone` runs when the engine's `done` event arrives, before that frame is written. */
export async function pump(
  lp: FrameSink,
  events: AsyncIterable<WireEvent>,
  signal: AbortSignal,
  onDone: () => void,
): Promise<void> {
  const pending: Pending[] = [];
  let pendingBytes = 0;
  let writing: Promise<void> | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let lastWrite = Number.NEGATIVE_INFINITY;
  let failed: { error: unknown } | undefined;

  const flush = async (): Promise<void> => {
    try {
      while (pending.length > 0) {
        // Encoding happens here, once per write, not once per token on the path that drives generation.
        const frames = pending.splice(0).map(encodePending);
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
      const last = pending.at(-1);
      if (event.type === "token") {
        if (last?.kind === "tokens") {
          last.text += event.text;
          last.tokens.push(...event.tokens);
        } else pending.push({ kind: "tokens", text: event.text, tokens: [...event.tokens] });
        pendingBytes += event.text.length + event.tokens.length * TOKEN_ID_BYTES;
      } else {
        const bytes = encode(eventMessage(event));
        pending.push({ kind: "frame", bytes });
        pendingBytes += bytes.byteLength;
      }
      if (writing) {
        // The running flush takes this frame when its write completes.
        if (pendingBytes > MAX_PENDING_BYTES) await writing;
        continue;
      }
      const wait = lastWrite + COALESCE_MS - performance.now();
      // A bill is due at once: the request waits on its payment.
      const now = event.type === "done" || event.type === "bill";
      if (now || pendingBytes > MAX_PENDING_BYTES || wait <= 0) start();
      else timer ??= setTimeout(start, wait);
    }
    if (pending.length > 0) start();
    while (writing) await writing;
    if (failed) throw failed.error;
  } finally {
    clearTimeout(timer);
  }
}
