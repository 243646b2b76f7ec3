import type { AbortOptions, Stream, StreamMessageEvent } from "@libp2p/interface";
import { decode as cborDecode, encode as cborEncode } from "cborg";
import { z } from "zod";
import { abortReason } from "../util/abort.ts";
import { takeBytes } from "../util/bytes.ts";
import { errorMessage, InfernetError, TimeoutError } from "../util/errors.ts";

/**
 * Infernet's wire format, shared by every protocol: each message is one CBOR map (RFC 8949) behind an
 * unsigned-varint length prefix (the libp2p length-prefixed framing), carrying `v` (the wire version)
 * and `type`. Bytes from a peer are untrusted: a frame is size-checked from its prefix before it is
 * buffered, decoded with a strict CBOR profile, and validated with the protocol's zod schema before
 * any field is used.
 */

/** The version every message carries; a peer speaking another gets a `unsupported-version` error. */
export const WIRE_VERSION = 1;
/** Longest `code` and `message` in an error frame (longer ones are cut, never refused). */
export const MAX_ERROR_CODE_CHARS = 64;
export const MAX_ERROR_MESSAGE_CHARS = 1_024;
/** Longest varint length prefix read (a 64-bit varint; anything longer is malformed). */
const MAX_PREFIX_BYTES = 10;

/**
 * Why a frame could not be used. `ended`: the stream closed before a whole frame arrived (or before
 * any); `too-large`: the length prefix is over the limit; `malformed`: not CBOR, not a map, or the
 * schema refused it; `unsupported-version`: a map with another `v`.
 */
export type WireErrorCode = "ended" | "too-large" | "malformed" | "unsupported-version";

/** A peer broke the protocol, or the stream ended mid-conversation. `code` says which. */
export class ProtocolError extends InfernetError {
  readonly code: string;

  constructor(code: string, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options);
    this.code = code;
  }
}

/**
 * CBOR profile for peer input: no indefinite lengths, undefined, NaN, infinities, integers beyond
 * 2^53, tags (none are registered) or duplicate keys, and minimal integer encodings only. Anything else is malformed.
 */
const DECODE_OPTIONS = {
  strict: true,
  allowIndefinite: false,
  allowUndefined: false,
  allowInfinity: false,
  allowNaN: false,
  allowBigInt: false,
  rejectDuplicateMapKeys: true,
} as const;

export function encode(message: unknown): Uint8Array {
  return cborEncode(message, { ignoreUndefinedProperties: true });
}

/** Decodes one CBOR value with the strict profile; throws `ProtocolError` (`malformed`) on anything else. */
export function decode(bytes: Uint8Array): unknown {
  try {
    return cborDecode(bytes, DECODE_OPTIONS);
  } catch (cause) {
    // Deeply nested input can exhaust the stack inside the decoder: that is malformed input too.
    throw new ProtocolError("malformed", `not a valid CBOR message: ${clip(errorMessage(cause), 200)}`, { cause });
  }
}

/** The error frame every protocol uses to refuse a request or report a failure. */
export const ErrorMessageSchema = z.object({
  v: z.literal(WIRE_VERSION),
  type: z.literal("error"),
  code: z.string().max(MAX_ERROR_CODE_CHARS),
  message: z.string().max(MAX_ERROR_MESSAGE_CHARS),
});
export type ErrorMessage = z.infer<typeof ErrorMessageSchema>;

/** An error frame, with `code` and `message` cut to their limits. */
export function errorFrame(code: string, message: string): ErrorMessage {
  return {
    v: WIRE_VERSION,
    type: "error",
    code: clip(code, MAX_ERROR_CODE_CHARS),
    message: clip(message, MAX_ERROR_MESSAGE_CHARS),
  };
}

/** Any protocol message: a map with the wire version and its type. */
export type WireMessage = { v: number; type: string; [field: string]: unknown };

export interface WireOptions {
  signal?: AbortSignal;
}

/** Where frames are read from: a `FrameStream`, or `lpStream` from @libp2p/utils. */
export interface FrameSource {
  read(options?: AbortOptions): Promise<Uint8Array | { subarray(): Uint8Array }>;
}

/** Where frames are written to: a `FrameStream`, or `lpStream` from @libp2p/utils. */
export interface FrameSink {
  write(frame: Uint8Array, options?: AbortOptions): Promise<void>;
  writeV(frames: Uint8Array[], options?: AbortOptions): Promise<void>;
}

/**
 * Reads one frame and validates it: its version first (so a newer peer gets a clear refusal), then
 * `schema`. Throws `ProtocolError` with a `WireErrorCode`, or the typed abort error of `signal`.
 */
export async function readMessage<S extends z.ZodType>(
  lp: FrameSource,
  schema: S,
  options: WireOptions = {},
): Promise<z.infer<S>> {
  let frame: Uint8Array;
  try {
    const read = await lp.read(options.signal ? { signal: options.signal } : {});
    frame = read instanceof Uint8Array ? read : read.subarray();
  } catch (cause) {
    throw readFailure(cause, options.signal);
  }
  return parseMessage(frame, schema);
}

/** Validates one frame's bytes as `readMessage` does. */
export function parseMessage<S extends z.ZodType>(frame: Uint8Array, schema: S): z.infer<S> {
  const value = decode(frame);
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw new ProtocolError("malformed", "a message must be a CBOR map");
  }
  const version = (value as { v?: unknown }).v;
  if (version !== WIRE_VERSION) {
    throw new ProtocolError(
      "unsupported-version",
      `unsupported wire version ${clip(String(version), 20)}; this node speaks version ${WIRE_VERSION}`,
    );
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.map(String).join(".")}: ` : "";
    throw new ProtocolError("malformed", clip(`invalid message: ${where}${issue?.message ?? "rejected"}`, 300));
  }
  return parsed.data;
}

/** Encodes and writes one frame, waiting for the stream to drain when its buffer is full. */
export async function writeMessage(lp: FrameSink, message: WireMessage, options: WireOptions = {}): Promise<void> {
  await writeFrames(lp, [encode(message)], options);
}

/**
 * Writes already encoded frames in one send (several small frames then cost one transport write).
 * `signal` is raced (see `abortable`), not handed to the stream.
 */
export async function writeFrames(lp: FrameSink, frames: Uint8Array[], options: WireOptions = {}): Promise<void> {
  if (options.signal?.aborted) throw abortReason(options.signal);
  const write = frames.length === 1 ? lp.write(frames[0] as Uint8Array) : lp.writeV(frames);
  await abortable(write, options.signal);
}

/**
 * Races `promise` against `signal`, rejecting with the signal's typed error (`AbortedError` or
 * `TimeoutError`) and removing its listener either way. Use it instead of handing a long-lived signal
 * to libp2p calls that wait for stream events: those keep one listener per call until the signal aborts.
 */
export async function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => {});
    throw abortReason(signal);
  }
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        onAbort = () => {
          promise.catch(() => {});
          reject(abortReason(signal));
        };
        signal.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
}

/**
 * A signal that aborts with `TimeoutError` after `ms`; disposing it clears the timer, so nothing it
 * reaches is kept alive until then (unlike `AbortSignal.timeout`).
 */
export function timeoutSignal(ms: number, what: string): Disposable & { signal: AbortSignal } {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new TimeoutError(`${what}: no progress within ${ms} ms`)), ms);
  return { signal: controller.signal, [Symbol.dispose]: () => clearTimeout(timer) };
}

function readFailure(cause: unknown, signal: AbortSignal | undefined): Error {
  if (signal?.aborted) return abortReason(signal);
  if (cause instanceof ProtocolError) return cause;
  const name = cause instanceof Error ? cause.name : "";
  if (name === "InvalidDataLengthError" || name === "InvalidDataLengthLengthError" || name === "StreamBufferError") {
    return new ProtocolError("too-large", `message too large: ${errorMessage(cause)}`, { cause });
  }
  if (name === "InvalidMessageLengthError") {
    return new ProtocolError("malformed", `invalid length prefix: ${errorMessage(cause)}`, { cause });
  }
  return new ProtocolError("ended", `the stream ended before a whole message arrived: ${errorMessage(cause)}`, {
    cause,
  });
}

/** `text` cut to at most `max` characters. */
export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/**
 * A length-prefixed frame view of a libp2p stream (unsigned-varint prefix, as `lpStream` writes it),
 * built for many small frames: incoming chunks are split into frames as they arrive, synchronously,
 * so a chunk carrying dozens of token frames costs one wake-up, not several promises per frame. A
 * prefix over `maxFrameBytes` fails the reader at once (`too-large`) without buffering the frame, and
 * at most `maxFrameBytes` of unread frames are held. Writes wait for the stream to drain, listening
 * only while they wait.
 */
export class FrameStream implements FrameSource, FrameSink {
  private readonly partial: Uint8Array[] = [];
  private partialBytes = 0;
  private readonly frames: Uint8Array[] = [];
  private queuedBytes = 0;
  private failure: ProtocolError | undefined;
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly stream: Stream,
    private readonly maxFrameBytes: number,
  ) {
    stream.addEventListener("message", this.onMessage);
    stream.addEventListener("end", this.onEnd);
    stream.addEventListener("close", this.onEnd);
  }

  async read(options: AbortOptions = {}): Promise<Uint8Array> {
    for (;;) {
      const frame = this.frames.shift();
      if (frame) {
        this.queuedBytes -= frame.byteLength;
        return frame;
      }
      if (this.failure) throw this.failure;
      if (this.ended) {
        const what = this.partialBytes > 0 ? `${this.partialBytes} bytes of an unfinished frame` : "no further frame";
        throw new ProtocolError("ended", `the stream ended with ${what}`);
      }
      await abortable(new Promise<void>((resolve) => (this.wake = resolve)), options.signal);
    }
  }

  async write(frame: Uint8Array, options: AbortOptions = {}): Promise<void> {
    await this.writeV([frame], options);
  }

  /** Writes frames with one `send`, so one transport write carries them all. */
  async writeV(frames: Uint8Array[], options: AbortOptions = {}): Promise<void> {
    const prefixes = frames.map((f) => varint(f.byteLength));
    const out = new Uint8Array(frames.reduce((n, f, i) => n + f.byteLength + (prefixes[i] as Uint8Array).length, 0));
    let at = 0;
    frames.forEach((f, i) => {
      const prefix = prefixes[i] as Uint8Array;
      out.set(prefix, at);
      out.set(f, at + prefix.length);
      at += prefix.length + f.byteLength;
    });
    if (this.stream.send(out)) return;
    await abortable(this.drained(), options.signal);
  }

  private drained(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        this.stream.removeEventListener("drain", onDrain);
        this.stream.removeEventListener("close", onClose);
      };
      const onDrain = () => {
        done();
        resolve();
      };
      const onClose = () => {
        done();
        reject(new ProtocolError("ended", "the stream closed before the frame was sent"));
      };
      this.stream.addEventListener("drain", onDrain);
      this.stream.addEventListener("close", onClose);
    });
  }

  private readonly onMessage = (event: StreamMessageEvent): void => {
    if (this.failure) return;
    const data = event.data;
    if (data instanceof Uint8Array) this.partial.push(data);
    else for (const chunk of data) this.partial.push(chunk);
    this.partialBytes += data.byteLength;
    this.split();
    this.notify();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.notify();
  };

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Moves every complete frame from `partial` to `frames`. */
  private split(): void {
    for (;;) {
      let length = 0;
      let prefix = 0;
      let complete = false;
      scan: for (const chunk of this.partial) {
        for (const byte of chunk) {
          length += (byte & 0x7f) * 2 ** (7 * prefix);
          prefix += 1;
          if (byte < 0x80) {
            complete = true;
            break scan;
          }
          if (prefix >= MAX_PREFIX_BYTES) {
            this.fail("malformed", "invalid length prefix");
            return;
          }
        }
      }
      if (!complete) return;
      if (length > this.maxFrameBytes) {
        this.fail("too-large", `message too large: ${length} bytes, the limit is ${this.maxFrameBytes}`);
        return;
      }
      if (this.partialBytes < prefix + length) return;
      const frame = this.take(prefix + length).subarray(prefix);
      this.frames.push(frame);
      this.queuedBytes += frame.byteLength;
      if (this.queuedBytes > this.maxFrameBytes) {
        this.fail("too-large", `more than ${this.maxFrameBytes} bytes of frames arrived unread`);
        return;
      }
    }
  }

  /** The first `n` buffered bytes, as a view when they lie in one chunk. */
  private take(n: number): Uint8Array {
    this.partialBytes -= n;
    return takeBytes(this.partial, n);
  }

  private fail(code: WireErrorCode, message: string): void {
    this.failure = new ProtocolError(code, message);
    this.partial.length = 0;
    this.partialBytes = 0;
  }
}

/** A frame reader/writer over `stream` whose incoming frames may be at most `maxFrameBytes`. */
export function wireStream(stream: Stream, maxFrameBytes: number): FrameStream {
  return new FrameStream(stream, maxFrameBytes);
}

/** The unsigned varint (multiformats unsigned-varint) of `n`, as length prefixes are written. */
export function varint(n: number): Uint8Array {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return new Uint8Array(out);
}
