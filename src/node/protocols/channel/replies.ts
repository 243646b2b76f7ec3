import type { PeerId } from "@libp2p/interface";
import { ChannelError, ChannelTimeoutError, RemoteChannelError } from "../../../payments/channel/errors.ts";
import { abortReason } from "../../../util/abort.ts";
import { errorMessage, TimeoutError } from "../../../util/errors.ts";
import { ProtocolError } from "../../wire.ts";
import { remoteCode } from "./messages.ts";

/** How the payer side turns deadlines, refusals and broken streams into the errors its callers see. */

export interface CallOptions {
  signal?: AbortSignal;
  /** Budget for the call (default: the service's). */
  deadlineMs?: number;
}

/**
 * A signal for one call: aborts with `ChannelTimeoutError` after the deadline, when the caller's
 * signal aborts, or when the service stops (`calls` holds it meanwhile). A timer, not
 * AbortSignal.timeout: disposing clears it, so nothing of the call is kept alive.
 */
export function callDeadline(
  call: CallOptions,
  defaultMs: number,
  calls: Set<AbortController>,
  what: string,
): Disposable & { signal: AbortSignal } {
  if (call.signal?.aborted) throw abortReason(call.signal);
  const deadlineMs = call.deadlineMs ?? defaultMs;
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new ChannelTimeoutError(`${what} within ${deadlineMs} ms`)),
    deadlineMs,
  );
  const onAbort = () => controller.abort(call.signal?.reason);
  call.signal?.addEventListener("abort", onAbort, { once: true });
  calls.add(controller);
  return {
    signal: controller.signal,
    [Symbol.dispose]: () => {
      clearTimeout(timer);
      call.signal?.removeEventListener("abort", onAbort);
      calls.delete(controller);
    },
  };
}

/** The answer, or the payee's refusal as `RemoteChannelError` with the code it sent. */
export function answer<T extends { type: string }>(reply: T, peer: PeerId | string): Exclude<T, { type: "error" }> {
  if (reply.type === "error") {
    const { code, message } = reply as unknown as { code: string; message: string };
    throw new RemoteChannelError(remoteCode(code), peer.toString(), `${peer} refused: ${message}`);
  }
  return reply as Exclude<T, { type: "error" }>;
}

export function abortFailure(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof ChannelTimeoutError) return reason;
  if (reason instanceof TimeoutError) return new ChannelTimeoutError(reason.message, { cause: reason });
  return abortReason(signal);
}

/** A failure as the caller sees it: a refusal or a local check as is, a broken stream as "protocol". */
export function payFailure(err: unknown, peer: string): Error {
  if (err instanceof ChannelError) return err;
  if (err instanceof ProtocolError) {
    const what = err.code === "ended" ? `the stream from ${peer} ended before its answer` : err.message;
    return new RemoteChannelError("protocol", peer, what, { cause: err });
  }
  return err instanceof Error ? err : new RemoteChannelError("internal", peer, errorMessage(err));
}
