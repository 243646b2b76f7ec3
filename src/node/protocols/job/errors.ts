import { IdempotencyConflictError, JobNotFoundError } from "../../../jobs/errors.ts";
import { DeadlineTooShortError, ModelNotServedError, PriceTooLowError } from "../../../jobs/feasibility.ts";
import { InsufficientFundsError } from "../../../payments/ledger.ts";
import { abortReason } from "../../../util/abort.ts";
import { errorMessage, InfernetError, InvalidInputError, NoProviderError, TimeoutError } from "../../../util/errors.ts";
import { clip, errorFrame, ProtocolError } from "../../wire.ts";
import { JOB_ERROR_CODES, type JobErrorCode, type JobErrorFrame, MAX_HINT_CHARS } from "./messages.ts";

/**
 * How failures cross the wire: the aggregator turns a typed error into an error frame's code (with
 * its hint and, for scheduling refusals, the figure a client needs to fix its spec), and the client
 * turns the code back into the same class, so a caller handles a remote refusal exactly like a
 * local one. Codes with no class of their own arrive as `RemoteJobError`.
 */

/**
 * A job call failed on `peer` for a reason with no typed error of its own: the aggregator was busy,
 * unavailable or failed (`code` is the one it sent), or the peer broke the protocol or the stream
 * ended early (`protocol`).
 */
export class RemoteJobError extends InfernetError {
  readonly code: JobErrorCode;
  readonly peer: string;

  constructor(code: JobErrorCode, peer: string, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options);
    this.code = code;
    this.peer = peer;
  }
}

/** Why the aggregator refused a request, when no typed error says it (a bad frame, a full house). */
export class Refusal extends Error {
  constructor(
    readonly code: JobErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The error frame for `err`, raised while serving a call. */
export function toErrorFrame(err: unknown): JobErrorFrame {
  const { code, extra } = classify(err);
  const message =
    code === "internal" ? `${err instanceof Error ? err.name : "Error"}: ${errorMessage(err)}` : errorMessage(err);
  const hint = err instanceof InfernetError && err.hint ? { hint: clip(err.hint, MAX_HINT_CHARS) } : {};
  return { ...errorFrame(code, message), ...hint, ...extra };
}

function classify(err: unknown): { code: JobErrorCode; extra?: Partial<JobErrorFrame> } {
  if (err instanceof Refusal) return { code: err.code };
  if (err instanceof ProtocolError) {
    return { code: err.code === "unsupported-version" ? "unsupported-version" : "bad-request" };
  }
  if (err instanceof JobNotFoundError) return { code: "not-found" };
  if (err instanceof IdempotencyConflictError) return { code: "idempotency-conflict" };
  if (err instanceof InvalidInputError) return { code: "invalid-input" };
  if (err instanceof PriceTooLowError) return { code: "price-too-low", extra: whole("neededMsat", err.neededMsat) };
  if (err instanceof DeadlineTooShortError) {
    return { code: "deadline-too-short", extra: whole("expectedFinishMs", err.expectedFinishMs) };
  }
  if (err instanceof ModelNotServedError) return { code: "model-not-served" };
  if (err instanceof InsufficientFundsError) {
    return {
      code: "insufficient-funds",
      extra: { neededMsatText: err.neededMsat.toString(), balanceMsatText: err.balanceMsat.toString() },
    };
  }
  if (err instanceof NoProviderError) return { code: "no-provider" };
  if (err instanceof TimeoutError) return { code: "timeout" };
  return { code: "internal" };
}

/** `{[key]: value}` when `value` fits the frame's schema (a whole number >= 0), else nothing. */
function whole(key: "neededMsat" | "expectedFinishMs", value: number): Partial<JobErrorFrame> {
  return Number.isSafeInteger(value) && value >= 0 ? { [key]: value } : {};
}

/** The typed error for an error frame `peer` sent. */
export function fromErrorFrame(frame: JobErrorFrame, peer: string): Error {
  const code = remoteCode(frame.code);
  const message = `${peer} answered ${frame.code}: ${frame.message}`;
  const options = frame.hint ? { hint: frame.hint } : {};
  switch (code) {
    case "not-found":
      return new JobNotFoundError(message, options);
    case "idempotency-conflict":
      return new IdempotencyConflictError(message, options);
    case "invalid-input":
      return new InvalidInputError(message, options);
    case "model-not-served":
      return new ModelNotServedError(message, options);
    case "no-provider":
      return new NoProviderError(message, options);
    case "price-too-low":
      return new PriceTooLowError(message, frame.neededMsat ?? Number.NaN, options);
    case "deadline-too-short":
      return new DeadlineTooShortError(message, frame.expectedFinishMs ?? Number.NaN, options);
    case "insufficient-funds":
      return new InsufficientFundsError(
        message,
        "credit",
        BigInt(frame.neededMsatText ?? 0),
        BigInt(frame.balanceMsatText ?? 0),
        options,
      );
    default:
      return new RemoteJobError(code, peer, message, options);
  }
}

/** A code from the wire as one we know; a newer peer's unknown code (or a claimed `protocol`) is "internal". */
function remoteCode(code: string): JobErrorCode {
  return code !== "protocol" && (JOB_ERROR_CODES as readonly string[]).includes(code)
    ? (code as JobErrorCode)
    : "internal";
}

/**
 * What a failed call throws: the caller's abort or timeout as is, typed errors as they are, a broken
 * protocol or stream as `RemoteJobError` (`protocol`, or `unsupported-version`).
 */
export function callFailure(err: unknown, signal: AbortSignal, peer: string, what: string): Error {
  if (signal.aborted) return abortReason(signal);
  if (err instanceof ProtocolError) {
    const code = err.code === "unsupported-version" ? "unsupported-version" : "protocol";
    const message = err.code === "ended" ? `the stream from ${peer} ended before ${what} was done` : err.message;
    return new RemoteJobError(code, peer, message, { cause: err });
  }
  if (err instanceof InfernetError) return err;
  return new RemoteJobError("protocol", peer, `the ${what} stream with ${peer} failed: ${errorMessage(err)}`, {
    cause: err,
  });
}
