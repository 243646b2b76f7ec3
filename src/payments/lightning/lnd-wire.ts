import { z } from "zod";

/**
 * LND's REST wire format (its grpc-gateway proxy of lightning.proto, routerrpc/router.proto and
 * invoicesrpc/invoices.proto), for the calls Infernet makes. LND marshals with proto field names
 * and every field present; `bytes` are base64 (URL-safe base64 in query strings), 64-bit integers
 * are decimal strings, 32-bit ones numbers, enums their names. Errors are `{code, message, details}`
 * with the HTTP status grpc-gateway maps from the gRPC code; a server stream is one JSON object per
 * line, each `{"result": ...}` or a final `{"error": {...}}`.
 */

/** Most bytes of a unary answer (an invoice, getinfo): a few kB in practice. */
export const MAX_LND_ANSWER_BYTES = 1024 * 1024;
/** Most bytes of one line of a payment stream: a Payment with every HTLC attempt and route in it. */
export const MAX_LND_STREAM_LINE_BYTES = 4 * 1024 * 1024;
/** Most updates read from one payment stream (LND sends one per HTLC attempt change). */
export const MAX_LND_STREAM_UPDATES = 10_000;

/** The keysend preimage record (TLV type 5482373484, as LND's `--keysend` and the keysend spec use). */
export const KEYSEND_RECORD = "5482373484";

export const Int64 = z.string().regex(/^-?\d{1,19}$/);
export const Uint64 = z.string().regex(/^\d{1,20}$/);
export const Base64 = z.string().regex(/^[A-Za-z0-9+/_-]*={0,2}$/);
const Hex = z.string().regex(/^[0-9a-f]*$/);

export const LndErrorBody = z.object({
  code: z.number().int(),
  message: z.string().max(10_000),
});

/** grpc-gateway v2 wraps stream errors as {"error": status}; v1 also sent grpc_code/http_code. */
export const StreamError = z.object({
  error: z.object({
    code: z.number().int().optional(),
    grpc_code: z.number().int().optional(),
    message: z.string().max(10_000),
  }),
});

export const GetInfo = z.object({
  identity_pubkey: z.string().regex(/^0[23][0-9a-f]{64}$/),
  alias: z.string().max(256),
  block_height: z.number().int().nonnegative(),
  synced_to_chain: z.boolean(),
  chains: z.array(z.object({ chain: z.string().max(32), network: z.string().max(32) })).max(8),
  version: z.string().max(256),
});

export const INVOICE_STATES = ["OPEN", "SETTLED", "CANCELED", "ACCEPTED"] as const;

export const Invoice = z.object({
  memo: z.string().max(2048),
  r_preimage: Base64,
  r_hash: Base64,
  value_msat: Int64,
  creation_date: Int64,
  settle_date: Int64,
  payment_request: z.string().max(8192),
  expiry: Int64,
  amt_paid_msat: Int64,
  state: z.enum(INVOICE_STATES),
  is_keysend: z.boolean(),
});

export const AddInvoiceResponse = z.object({
  r_hash: Base64,
  payment_request: z.string().max(8192),
  add_index: Uint64,
});

export const AddHoldInvoiceResp = z.object({
  payment_request: z.string().max(8192),
  add_index: Uint64,
});

export const PAYMENT_STATUSES = ["UNKNOWN", "IN_FLIGHT", "SUCCEEDED", "FAILED", "INITIATED"] as const;

/** lnrpc.Payment: its payment_hash and payment_preimage are hex `string` fields, not bytes. */
export const Payment = z.object({
  payment_hash: Hex,
  payment_preimage: Hex,
  value_msat: Int64,
  fee_msat: Int64,
  status: z.enum(PAYMENT_STATUSES),
  failure_reason: z.string().max(64),
});

export const PaymentUpdate = z.object({ result: Payment });

export type LndPayment = z.output<typeof Payment>;

export function toBase64(hex: string): string {
  return Buffer.from(hex, "hex").toString("base64");
}

/**
 * Query strings carry bytes as URL-safe base64 with its padding: grpc-gateway decodes them with Go's
 * StdEncoding, then URLEncoding (padded), and a "+" does not survive the query (lnd issues #6909, #9421).
 */
export function toBase64Url(hex: string): string {
  return Buffer.from(hex, "hex").toString("base64").replaceAll("+", "-").replaceAll("/", "_");
}

export function base64ToHex(b64: string): string {
  return Buffer.from(b64, "base64").toString("hex");
}
