import type { z } from "zod";
import { abortReason } from "../../util/abort.ts";
import { errorMessage, InfernetError, TimeoutError } from "../../util/errors.ts";

/**
 * One careful HTTP call to a remote payment service (an Esplora server, bitcoind, LND): a deadline,
 * the caller's AbortSignal, a byte cap on the body read before anything is parsed, and failures as
 * typed errors. The chain and Lightning clients share it, each with its own error class.
 */

/**
 * Why a remote call failed, for callers and tests that need more than the message. `unavailable`: the
 * service answered well but has no answer to give (no fee estimate on a fresh regtest chain).
 */
export type RemoteFailure = "unreachable" | "http" | "too-large" | "json" | "shape" | "rpc" | "unavailable";

export interface RemoteErrorOptions {
  reason: RemoteFailure;
  /** HTTP status, when one came back. */
  status?: number;
  hint?: string;
  cause?: unknown;
}

/** A remote service failed or answered something unusable. */
export class RemoteServiceError extends InfernetError {
  readonly reason: RemoteFailure;
  readonly status: number | undefined;

  constructor(message: string, options: RemoteErrorOptions) {
    super(message, options);
    this.reason = options.reason;
    this.status = options.status;
  }
}

export type RemoteErrorClass = new (message: string, options: RemoteErrorOptions) => RemoteServiceError;

export interface RemoteRequest {
  /** Names the service in messages ("Esplora", "bitcoind", "LND"). */
  service: string;
  url: string;
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
  /** Most bytes of body read; more is an error, never a truncated parse. */
  maxBytes: number;
  /** Deadline for the whole call (or, for `openRemote`, until the response headers arrive). */
  timeoutMs: number;
  signal?: AbortSignal;
  /** PEM certificate(s) to trust for https (LND's self-signed tls.cert). */
  caPem?: string;
}

export interface RemoteResponse {
  status: number;
  text: string;
}

/** Bytes shown of a remote body in an error message. */
const ERROR_BODY_PREVIEW_CHARS = 200;

/** A response, its body not read yet, and a release that ends the deadline and the abort link. */
export interface OpenResponse {
  response: Response;
  /** The signal every later read must honour (caller abort, or the deadline when not cleared). */
  signal: AbortSignal;
  release(): void;
}

/**
 * Sends the request and waits for the response headers. With `streaming`, the deadline stops once
 * headers arrive (a payment stream may rightly stay open until the payment resolves); the caller's
 * signal keeps governing the body.
 */
export async function openRemote(req: RemoteRequest, Fail: RemoteErrorClass, streaming = false): Promise<OpenResponse> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new TimeoutError(`${req.service} did not answer within ${req.timeoutMs} ms`)),
    req.timeoutMs,
  );
  const onAbort = () => controller.abort(abortReason(req.signal as AbortSignal));
  if (req.signal?.aborted) onAbort();
  req.signal?.addEventListener("abort", onAbort, { once: true });
  const release = () => {
    clearTimeout(timer);
    req.signal?.removeEventListener("abort", onAbort);
  };
  try {
    const response = await fetch(req.url, {
      method: req.method ?? "GET",
      headers: req.headers,
      body: req.body,
      signal: controller.signal,
      redirect: "error",
      ...(req.caPem ? { tls: { ca: req.caPem } } : {}),
    });
    if (streaming) clearTimeout(timer);
    return { response, signal: controller.signal, release };
  } catch (err) {
    release();
    if (controller.signal.aborted) throw controller.signal.reason;
    throw new Fail(`${req.service} at ${origin(req.url)} cannot be reached: ${errorMessage(err)}`, {
      reason: "unreachable",
      hint: `check that ${req.service} is running and the URL is right`,
      cause: err,
    });
  }
}

/** The whole call: status and body text (at most `maxBytes`, UTF-8). Any status is returned. */
export async function requestText(req: RemoteRequest, Fail: RemoteErrorClass): Promise<RemoteResponse> {
  const open = await openRemote(req, Fail);
  try {
    const text = await readCapped(open.response, req.maxBytes, req.service, Fail, open.signal);
    return { status: open.response.status, text };
  } finally {
    open.release();
  }
}

/** Reads a body to its end, refusing more than `maxBytes` (the declared length is checked first). */
export async function readCapped(
  response: Response,
  maxBytes: number,
  service: string,
  Fail: RemoteErrorClass,
  signal: AbortSignal,
): Promise<string> {
  const tooLarge = () =>
    new Fail(`${service} sent more than ${maxBytes} bytes`, { reason: "too-large", status: response.status });
  const declared = Number(response.headers.get("content-length") ?? Number.NaN);
  if (declared > maxBytes) {
    await response.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  const reader = response.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw tooLarge();
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof RemoteServiceError) throw err;
    if (signal.aborted) throw signal.reason;
    throw new Fail(`${service} broke off its answer: ${errorMessage(err)}`, { reason: "unreachable", cause: err });
  }
  return decodeUtf8(Buffer.concat(chunks), service, Fail, response.status);
}

export function decodeUtf8(bytes: Uint8Array, service: string, Fail: RemoteErrorClass, status?: number): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw new Fail(`${service} sent a body that is not UTF-8 text`, { reason: "json", status, cause: err });
  }
}

/** JSON text checked against a schema; `what` names the answer in the error. */
export function parseJson<S extends z.ZodType>(
  text: string,
  schema: S,
  what: string,
  Fail: RemoteErrorClass,
  status?: number,
): z.output<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Fail(`${what}: the answer is not JSON (${preview(text)})`, { reason: "json", status, cause: err });
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? issue.path.join(".") : "the answer";
    throw new Fail(`${what}: ${where} is not what was expected (${issue?.message ?? "invalid"})`, {
      reason: "shape",
      status,
      cause: parsed.error,
    });
  }
  return parsed.data;
}

/** The start of a remote body, for an error message (remote text is untrusted: shortened, one line). */
export function preview(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > ERROR_BODY_PREVIEW_CHARS ? `${line.slice(0, ERROR_BODY_PREVIEW_CHARS)}...` : line;
}

/** scheme://host:port of a URL, never its path or credentials. */
export function origin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(bad URL)";
  }
}
