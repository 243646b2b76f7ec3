import type { Stream } from "@libp2p/interface";
import { type LengthPrefixedStream, lpStream } from "@libp2p/utils";
import { decode as cborDecode, encode as cborEncode } from "cborg";
import { z } from "zod";
import { abortReason } from "../util/abort.ts";
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
/** Slack between a frame's size limit and the stream's read buffer, for the varint prefix. */
const PREFIX_SLACK_BYTES = 16;

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

/**
 * A length-prefixed view of `stream` that refuses frames over `maxFrameBytes` from their prefix alone,
 * and buffers at most one such frame.
 */
export function wireStream(stream: Stream, maxFrameBytes: number): LengthPrefixedStream<Stream> {
  return lpStream(stream, { maxDataLength: maxFrameBytes, maxBufferSize: maxFrameBytes + PREFIX_SLACK_BYTES });
}

/** Any protocol message: a map with the wire version and its type. */
export type WireMessage = { v: number; type: string; [field: string]: unknown };

export interface WireOptions {
  signal?: AbortSignal;
}

/**
 * Reads one frame and validates it: its version first (so a newer peer gets a clear refusal), then
 * `schema`. Throws `ProtocolError` with a `WireErrorCode`, or the typed abort error of `signal`.
 */
export async function readMessage<S extends z.ZodType>(
  lp: LengthPrefixedStream,
  schema: S,
  options: WireOptions = {},
): Promise<z.infer<S>> {
  let frame: Uint8Array;
  try {
    frame = (await lp.read(options.signal ? { signal: options.signal } : {})).subarray();
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
export async function writeMessage(
  lp: LengthPrefixedStream,
  message: WireMessage,
  options: WireOptions = {},
): Promise<void> {
  await writeFrames(lp, [encode(message)], options);
}

/**
 * Writes already encoded frames in one send (several small frames then cost one transport write).
 * `signal` is raced (see `abortable`), not handed to the stream.
 */
export async function writeFrames(
  lp: LengthPrefixedStream,
  frames: Uint8Array[],
  options: WireOptions = {},
): Promise<void> {
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
