import { InfernetError } from "../../util/errors.ts";
import { preview, type RemoteErrorOptions, RemoteServiceError } from "../chain/http.ts";
import { LndErrorBody, StreamError } from "./lnd-wire.ts";

/** LND answered an error, or something unusable. */
export class LndError extends RemoteServiceError {
  /** The gRPC status code LND gave (2 Unknown for most of its errors, 5 NotFound, ...). */
  readonly grpcCode: number | undefined;

  constructor(message: string, options: RemoteErrorOptions & { grpcCode?: number }) {
    super(message, options);
    this.grpcCode = options.grpcCode;
  }
}

/** The payment did not go through; LND's failure reason (FAILURE_REASON_NO_ROUTE, ...) is kept. */
export class PaymentFailedError extends InfernetError {
  constructor(
    message: string,
    readonly failureReason: string,
    readonly paymentHash: string,
  ) {
    super(message, { hint: failureHint(failureReason) });
  }
}

function failureHint(reason: string): string | undefined {
  if (reason === "FAILURE_REASON_INSUFFICIENT_BALANCE") return "add outbound liquidity to your Lightning node";
  if (reason === "FAILURE_REASON_NO_ROUTE")
    return "no route within the fee limit: raise the fee limit or open a channel";
  if (reason === "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS") {
    return "the payee refused it (an unknown, paid or cancelled invoice)";
  }
  return undefined;
}

/** `{code, message}` (or a stream's `{"error": ...}`) as an LndError, with a hint for auth failures. */
export function lndFailure(status: number, text: string): LndError {
  let code: number | undefined;
  let message = preview(text);
  try {
    const json: unknown = JSON.parse(text);
    const plain = LndErrorBody.safeParse(json);
    const wrapped = StreamError.safeParse(json);
    if (plain.success) {
      code = plain.data.code;
      message = preview(plain.data.message);
    } else if (wrapped.success) {
      code = wrapped.data.error.code ?? wrapped.data.error.grpc_code;
      message = preview(wrapped.data.error.message);
    }
  } catch {
    // Not JSON: a proxy's page or a crash; the preview says what it was.
  }
  const auth = /macaroon|verification failed|permission denied/i.test(message);
  return new LndError(`LND answered HTTP ${status}: ${message}`, {
    reason: code === undefined ? "http" : "rpc",
    status,
    grpcCode: code,
    hint: auth ? "check the macaroon (admin.macaroon, or one with invoice and offchain permissions)" : undefined,
  });
}
