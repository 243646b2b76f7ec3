import { errorMessage, InfernetError } from "../../util/errors.ts";
import { decodeUtf8, parseJson, preview } from "../chain/http.ts";
import { LndError } from "./lnd-errors.ts";
import { type LndPayment, MAX_LND_STREAM_LINE_BYTES, PaymentUpdate, StreamError } from "./lnd-wire.ts";

/** One line of a SendPaymentV2 stream: a Payment update, or LND's error for the whole payment. */
export function paymentLine(line: string): LndPayment {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new LndError(`LND sent a payment update that is not JSON (${preview(line)})`, { reason: "json", cause: err });
  }
  const failed = StreamError.safeParse(value);
  if (failed.success) {
    const e = failed.data.error;
    throw new LndError(`LND refused the payment: ${preview(e.message)}`, {
      reason: "rpc",
      grpcCode: e.code ?? e.grpc_code,
    });
  }
  return parseJson(line, PaymentUpdate, "LND payment update", LndError).result;
}

/** Newline-delimited JSON from a stream, each line capped at MAX_LND_STREAM_LINE_BYTES; cancels the stream at the end. */
export async function* lines(body: ReadableStream<Uint8Array>, signal: AbortSignal): AsyncGenerator<string> {
  const reader = body.getReader();
  let pending: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      let start = 0;
      for (let i = value.indexOf(0x0a); i !== -1; i = value.indexOf(0x0a, start)) {
        pending.push(value.subarray(start, i));
        const line = decodeUtf8(Buffer.concat(pending), "LND", LndError).trim();
        pending = [];
        size = 0;
        start = i + 1;
        if (line) yield line;
      }
      size += value.byteLength - start;
      if (size > MAX_LND_STREAM_LINE_BYTES) {
        throw new LndError(`LND sent a payment update over ${MAX_LND_STREAM_LINE_BYTES} bytes`, {
          reason: "too-large",
        });
      }
      pending.push(value.subarray(start));
    }
  } catch (err) {
    if (err instanceof InfernetError) throw err;
    if (signal.aborted) throw signal.reason;
    throw new LndError(`LND broke off the payment stream: ${errorMessage(err)}`, { reason: "unreachable", cause: err });
  } finally {
    await reader.cancel().catch(() => {});
  }
  const rest = decodeUtf8(Buffer.concat(pending), "LND", LndError).trim();
  if (rest) yield rest;
}
