import type { PeerId, Stream } from "@libp2p/interface";
import type { ConnectionManager } from "@libp2p/interface-internal";
import { msat } from "../../../payments/amount.ts";
import type { DirectPayer } from "../../../payments/direct.ts";
import type { InferenceEvent, InferenceRequest, Usage } from "../../../runtime/engine.ts";
import { abortReason } from "../../../util/abort.ts";
import { AbortedError, errorMessage, InvalidInputError, TimeoutError } from "../../../util/errors.ts";
import { abortable, encode, ProtocolError, readMessage, wireStream, writeFrames } from "../../wire.ts";
import { RemoteInferenceError } from "./errors.ts";
import {
  checkRequest,
  eventFromWire,
  MAX_DEADLINE_MS,
  MAX_REQUEST_FRAME_BYTES,
  MAX_RESPONSE_FRAME_BYTES,
  REMOTE_ERROR_CODES,
  type RemoteErrorCode,
  ResponseMessageSchema,
  requestMessage,
} from "./messages.ts";

/**
 * The client side of /infernet/infer/1.0.0: one stream per request. Events are yielded as their frames
 * arrive; leaving the loop early, aborting `signal` or passing the deadline resets the stream, which
 * stops the computation on the provider.
 */

export interface RemoteCall {
  connectionManager: ConnectionManager;
  protocol: string;
  peer: PeerId;
  model: { name: string; sha256: string };
  request: InferenceRequest;
  deadlineMs: number;
  signal: AbortSignal | undefined;
  /** Calls in flight; the service aborts them all when it stops. */
  inFlight: Set<AbortController>;
  /** A paid request: pays for tokens as they arrive and checks the bill (payments/direct.ts). */
  payer?: DirectPayer;
}

export async function* callRemote(call: RemoteCall): AsyncGenerator<InferenceEvent> {
  const peer = call.peer.toString();
  const { deadlineMs } = call;
  if (!Number.isInteger(deadlineMs) || deadlineMs < 1 || deadlineMs > MAX_DEADLINE_MS) {
    throw new InvalidInputError(`the deadline must be 1 to ${MAX_DEADLINE_MS} ms, got ${deadlineMs}`);
  }
  const { payer } = call;
  const message = requestMessage(call.model, call.request, deadlineMs, payer?.offer);
  checkRequest(message);
  const frame = encode(message);
  if (frame.byteLength > MAX_REQUEST_FRAME_BYTES) {
    throw new InvalidInputError(
      `the request is ${frame.byteLength} bytes; one remote request carries at most ${MAX_REQUEST_FRAME_BYTES}`,
      { hint: "send the inputs in smaller batches" },
    );
  }

  // One controller per call, fed by the caller's signal, the deadline and the service stopping. No
  // AbortSignal.any or AbortSignal.timeout: both keep the call reachable after it ends.
  const startedAt = performance.now();
  const controller = new AbortController();
  const { signal } = controller;
  const onCallerAbort = () => controller.abort(call.signal?.reason);
  if (call.signal?.aborted) throw abortReason(call.signal);
  call.signal?.addEventListener("abort", onCallerAbort, { once: true });
  const timer = setTimeout(
    () => controller.abort(new TimeoutError(`${peer} did not finish within the deadline of ${deadlineMs} ms`)),
    deadlineMs,
  );
  call.inFlight.add(controller);
  let stream: Stream | undefined;
  let finished = false;
  try {
    try {
      stream = await call.connectionManager.openStream(call.peer, call.protocol, { signal });
    } catch (cause) {
      if (signal.aborted) throw abortReason(signal);
      throw new RemoteInferenceError(
        "protocol",
        peer,
        `cannot open an inference stream to ${peer}: ${errorMessage(cause)}`,
        {
          cause,
        },
      );
    }
    const lp = wireStream(stream, MAX_RESPONSE_FRAME_BYTES);
    await writeFrames(lp, [frame], { signal });
    // Half-close: the request is complete. The provider treats a reset (not this) as cancellation.
    await abortable(stream.close(), signal);
    const expected = call.request.kind === "generate" ? "token" : "tensors";
    // A payment that failed ends the call at once: the provider would only stall waiting for it.
    const broken = payer?.broken.catch((cause) => {
      throw paymentError(peer, cause);
    });
    for (;;) {
      const read = readMessage(lp, ResponseMessageSchema, { signal });
      const reply = broken ? await Promise.race([read, broken]) : await read;
      if (reply.type === "error") {
        throw new RemoteInferenceError(
          remoteCode(reply.code),
          peer,
          `${peer} answered ${reply.code}: ${reply.message}`,
        );
      }
      if (reply.type === "bill") {
        if (!payer)
          throw new RemoteInferenceError("protocol", peer, `${peer} sent a bill for a request it was not paid for`);
        await payBill(payer, reply, peer, performance.now() - startedAt);
        continue;
      }
      const logprobs =
        reply.type === "logprobs" && call.request.kind === "generate" && call.request.logprobs !== undefined;
      if (reply.type !== "done" && reply.type !== expected && !logprobs) {
        throw new RemoteInferenceError(
          "protocol",
          peer,
          `${peer} sent a ${reply.type} frame for a ${call.request.kind} request`,
        );
      }
      const event = eventFromWire(reply);
      if (event.type === "done") finished = true;
      yield event;
      if (event.type === "token" && payer) payTokens(payer, event.tokens.length, peer);
      if (finished) return;
    }
  } catch (err) {
    throw failure(err, signal, peer);
  } finally {
    clearTimeout(timer);
    call.signal?.removeEventListener("abort", onCallerAbort);
    call.inFlight.delete(controller);
    if (!finished) stream?.abort(new AbortedError("the client stopped the request"));
  }
}

/** Pays for tokens received; a payment that fails ends the request (the provider would stop anyway). */
function payTokens(payer: DirectPayer, n: number, peer: string): void {
  try {
    payer.received(n);
  } catch (cause) {
    throw paymentError(peer, cause);
  }
}

function paymentError(peer: string, cause: unknown): RemoteInferenceError {
  return new RemoteInferenceError("payment-required", peer, `paying ${peer} failed: ${errorMessage(cause)}`, {
    cause,
  });
}

/** Checks the provider's bill against this node's own count, and pays the rest of it. */
async function payBill(
  payer: DirectPayer,
  bill: { owedMsat: string; usage: Usage },
  peer: string,
  elapsedMs: number,
): Promise<void> {
  try {
    await payer.settle(msat(bill.owedMsat, "bill"), bill.usage, Math.ceil(elapsedMs));
  } catch (cause) {
    const code = cause instanceof InvalidInputError ? "protocol" : "payment-required";
    throw new RemoteInferenceError(code, peer, `${peer}'s bill was not paid: ${errorMessage(cause)}`, { cause });
  }
}

function failure(err: unknown, signal: AbortSignal, peer: string): Error {
  // The caller's cancel or deadline explains any failure that follows it (a reset read, a closed write).
  if (signal.aborted) return abortReason(signal);
  if (err instanceof RemoteInferenceError || err instanceof InvalidInputError) return err;
  if (err instanceof ProtocolError) {
    const code = err.code === "unsupported-version" ? "unsupported-version" : "protocol";
    const what = err.code === "ended" ? `the stream from ${peer} ended before the result was complete` : err.message;
    return new RemoteInferenceError(code, peer, what, { cause: err });
  }
  return new RemoteInferenceError("protocol", peer, `the stream from ${peer} failed: ${errorMessage(err)}`, {
    cause: err,
  });
}

/** A code from the wire as one we know; a newer peer's unknown code is reported as "internal". */
function remoteCode(code: string): RemoteErrorCode {
  return (REMOTE_ERROR_CODES as readonly string[]).includes(code) ? (code as RemoteErrorCode) : "internal";
}
