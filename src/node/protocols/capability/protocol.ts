import type { PeerId, Stream } from "@libp2p/interface";
import type { ConnectionManager } from "@libp2p/interface-internal";
import { errorMessage } from "../../../util/errors.ts";
import {
  errorFrame,
  ProtocolError,
  readMessage,
  timeoutSignal,
  type WireMessage,
  wireStream,
  writeMessage,
} from "../../wire.ts";
import {
  CAPABILITY_RECORD_VERSION,
  type CapabilityRecord,
  GetRequestSchema,
  InvalidRecordError,
  MAX_REQUEST_BYTES,
  MAX_RESPONSE_BYTES,
  NOT_A_PROVIDER,
  ResponseSchema,
  verifyRecord,
} from "./messages.ts";

/**
 * CAPABILITY_PROTOCOL: ask a peer for its current signed record. One request `{v: 1, type: "get"}`,
 * one answer `{v: 1, type: "record", signed}` or `{v: 1, type: "error", code, message}`, each a
 * length-prefixed CBOR map (wire.ts); then both sides close.
 */

export const CAPABILITY_PROTOCOL = "/infernet/capability/1.0.0";
/** Concurrent inbound record requests per connection: a client needs one. */
export const MAX_INBOUND_STREAMS = 4;
export const MAX_OUTBOUND_STREAMS = 4;
/** A peer has this long to send its request and take the answer. */
export const HANDLER_TIMEOUT_MS = 5_000;
/** Dialling a provider and fetching its record, at most. */
export const FETCH_TIMEOUT_MS = 5_000;

const asError = (err: unknown) => (err instanceof Error ? err : new Error(errorMessage(err)));

/**
 * Handles one inbound request. Never throws: a bad request gets an error answer (wire.ts codes:
 * `malformed`, `too-large`, `unsupported-version`, `ended`), a vanished peer a reset stream.
 */
export async function serveRecord(stream: Stream, current: () => Promise<Uint8Array | undefined>): Promise<void> {
  using deadline = timeoutSignal(HANDLER_TIMEOUT_MS, "capability request");
  const signal = deadline.signal;
  const lp = wireStream(stream, MAX_REQUEST_BYTES);
  let reply: WireMessage;
  try {
    await readMessage(lp, GetRequestSchema, { signal });
    const signed = await current();
    reply = signed
      ? { v: CAPABILITY_RECORD_VERSION, type: "record", signed }
      : errorFrame(NOT_A_PROVIDER, "this node serves no models and is no aggregator");
  } catch (err) {
    // Deadline passed or the stream is gone: nobody to answer.
    if (signal.aborted || stream.writeStatus !== "writable") {
      stream.abort(asError(err));
      return;
    }
    reply = err instanceof ProtocolError ? errorFrame(err.code, err.message) : errorFrame("internal", "cannot answer");
  }
  try {
    await writeMessage(lp, reply, { signal });
    await stream.close({ signal });
  } catch (err) {
    stream.abort(asError(err));
  }
}

/**
 * Asks a peer for its record and verifies it; the record must be the peer's own. Throws
 * ProtocolError (the peer refused: `code`, e.g. NOT_A_PROVIDER, or broke the protocol), a record
 * error from `verifyRecord`, or the dial's error.
 */
export async function fetchRecord(
  connectionManager: Pick<ConnectionManager, "openStream">,
  peerId: PeerId,
  signal: AbortSignal,
): Promise<CapabilityRecord> {
  using timeout = timeoutSignal(FETCH_TIMEOUT_MS, `fetching the record of ${peerId}`);
  const deadline = AbortSignal.any([signal, timeout.signal]);
  const stream = await connectionManager.openStream(peerId, CAPABILITY_PROTOCOL, { signal: deadline });
  try {
    const lp = wireStream(stream, MAX_RESPONSE_BYTES);
    await writeMessage(lp, { v: CAPABILITY_RECORD_VERSION, type: "get" }, { signal: deadline });
    const reply = await readMessage(lp, ResponseSchema, { signal: deadline });
    if (reply.type === "error") throw new ProtocolError(reply.code, `${peerId} refused: ${reply.message}`);
    const record = verifyRecord(reply.signed);
    if (record.peerId !== peerId.toString()) {
      throw new InvalidRecordError("invalid-value", `${peerId} answered with the record of ${record.peerId}`);
    }
    await stream.close({ signal: deadline });
    return record;
  } catch (err) {
    stream.abort(asError(err));
    throw err;
  }
}
