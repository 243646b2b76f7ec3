import { z } from "zod";
import { type Msat, msat } from "../../../payments/amount.ts";
import { CHANNEL_ERROR_CODES, type ChannelErrorCode, InvalidAmountError } from "../../../payments/channel/errors.ts";
import { CHANNEL_NETWORKS, LOCKTIME_THRESHOLD, PUBLIC_KEY_BYTES } from "../../../payments/channel/script.ts";
import { MAX_STATE_SEQUENCE } from "../../../payments/channel/transactions.ts";
import { ErrorMessageSchema, WIRE_VERSION } from "../../wire.ts";

/**
 * Messages of /infernet/channel/1.0.0. The payer opens every stream and its first frame says what
 * the stream is for:
 *
 *   open:  open -> accept (the payee's key) ; funding -> opened      a new channel
 *   pay:   pay -> ack, pay -> ack, ...                               payments, pipelined; an ack of update n
 *                                                                    acknowledges every update up to n
 *   query: query -> state                                            the payee's latest state (after a reconnect)
 *   close: close -> closed (the payee's signature)                   cooperative close
 *
 * Any answer may instead be an `error` frame (code: a ChannelErrorCode), after which the payee closes
 * the stream. Amounts in msat travel as decimal strings: the strict CBOR profile refuses integers
 * above 2^53, and msat can reach 2.1e18. Sats (at most 2.1e15) are plain integers.
 */

/** Largest frame: an open stream's `funding` frame carries the whole funding transaction. */
export const MAX_FRAME_BYTES = 128 * 1024;
/** A standard transaction is at most 400,000 weight units, so at most 100,000 bytes without witnesses' discount. */
export const MAX_FUNDING_TX_BYTES = 100_000;
/** A commitment or close transaction: one input, at most two outputs, sent unsigned (~120 bytes). */
export const MAX_SETTLEMENT_TX_BYTES = 512;
/** A DER ECDSA signature with its hashtype byte (BIP66: at most 73 bytes). */
export const MAX_SIGNATURE_BYTES = 73;
/** What a payment is for (a job id, an invoice reference). */
export const MAX_MEMO_CHARS = 256;
/** Output index of the funding output (a standard transaction has far fewer). */
export const MAX_VOUT = 10_000;
/** The most sats that can exist: 21 million bitcoin. */
export const MAX_SATS = 21_000_000 * 100_000_000;

const v = z.literal(WIRE_VERSION);
const bytes = (max: number) =>
  z.custom<Uint8Array>(
    (x) => x instanceof Uint8Array && x.byteLength <= max,
    `must be a byte string of at most ${max} bytes`,
  );
const publicKey = z.custom<Uint8Array>(
  (x) => x instanceof Uint8Array && x.byteLength === PUBLIC_KEY_BYTES,
  `must be a ${PUBLIC_KEY_BYTES}-byte public key`,
);
const sats = z.int().min(0).max(MAX_SATS);
/** Whole msat as decimal digits; the range (<= 21 million bitcoin) is checked by `msat()`. */
const msatText = z.string().regex(/^\d{1,19}$/, "must be a whole number of msat in decimal");
export const ChannelIdSchema = z.string().regex(/^[0-9a-f]{64}:\d{1,5}$/, "must be a funding outpoint txid:vout");
const sequence = z.int().min(0).max(MAX_STATE_SEQUENCE);

export const OpenMessageSchema = z.object({
  v,
  type: z.literal("open"),
  network: z.enum(CHANNEL_NETWORKS),
  capacitySats: sats,
  feeSats: sats,
  refundHeight: z
    .int()
    .min(1)
    .max(LOCKTIME_THRESHOLD - 1),
  payerKey: publicKey,
});
export type OpenMessage = z.infer<typeof OpenMessageSchema>;

/**
 * Updates one `pay` frame may carry: a pipelining payer sends those signed while its last write was
 * out together. At the field limits one update is under 1.5 KB, so a full frame stays well under
 * MAX_FRAME_BYTES.
 */
export const MAX_UPDATES_PER_FRAME = 64;

export const UpdateSchema = z.object({
  sequence: sequence.min(1),
  paidMsat: msatText,
  amountMsat: msatText,
  tx: bytes(MAX_SETTLEMENT_TX_BYTES),
  signature: bytes(MAX_SIGNATURE_BYTES),
  memo: z.string().max(MAX_MEMO_CHARS),
});
export type WireUpdate = z.infer<typeof UpdateSchema>;

/** Consecutive updates of one channel, oldest first; acknowledged by one `ack` of the last one accepted. */
export const PayMessageSchema = z.object({
  v,
  type: z.literal("pay"),
  channelId: ChannelIdSchema,
  updates: z.array(UpdateSchema).min(1).max(MAX_UPDATES_PER_FRAME),
});
export type PayMessage = z.infer<typeof PayMessageSchema>;

export const QueryMessageSchema = z.object({ v, type: z.literal("query"), channelId: ChannelIdSchema });

export const CloseMessageSchema = z.object({
  v,
  type: z.literal("close"),
  channelId: ChannelIdSchema,
  feeSats: sats,
  tx: bytes(MAX_SETTLEMENT_TX_BYTES),
  signature: bytes(MAX_SIGNATURE_BYTES),
});
export type CloseMessage = z.infer<typeof CloseMessageSchema>;

/** The first frame of every stream. */
export const FirstMessageSchema = z.discriminatedUnion("type", [
  OpenMessageSchema,
  PayMessageSchema,
  QueryMessageSchema,
  CloseMessageSchema,
]);

export const FundingMessageSchema = z.object({
  v,
  type: z.literal("funding"),
  tx: bytes(MAX_FUNDING_TX_BYTES),
  vout: z.int().min(0).max(MAX_VOUT),
});

/** Payee answers, each possibly an error frame instead. */
export const AcceptMessageSchema = z.discriminatedUnion("type", [
  z.object({ v, type: z.literal("accept"), payeeKey: publicKey }),
  ErrorMessageSchema,
]);
export const OpenedMessageSchema = z.discriminatedUnion("type", [
  z.object({ v, type: z.literal("opened"), channelId: ChannelIdSchema }),
  ErrorMessageSchema,
]);
export const AckMessageSchema = z.discriminatedUnion("type", [
  z.object({ v, type: z.literal("ack"), channelId: ChannelIdSchema, sequence }),
  ErrorMessageSchema,
]);
export const StateMessageSchema = z.discriminatedUnion("type", [
  z.object({
    v,
    type: z.literal("state"),
    channelId: ChannelIdSchema,
    sequence,
    paidMsat: msatText,
    signature: bytes(MAX_SIGNATURE_BYTES),
    status: z.enum(["open", "closing", "closed"]),
  }),
  ErrorMessageSchema,
]);
export const ClosedMessageSchema = z.discriminatedUnion("type", [
  z.object({ v, type: z.literal("closed"), channelId: ChannelIdSchema, signature: bytes(MAX_SIGNATURE_BYTES) }),
  ErrorMessageSchema,
]);

/** A wire amount as `Msat`; out of range (more than 21 million bitcoin) is an amount refusal. */
export function wireMsat(text: string, what: string): Msat {
  try {
    return msat(text, what);
  } catch (cause) {
    throw new InvalidAmountError(`${what}: ${text.slice(0, 24)} msat is not a valid amount`, { cause });
  }
}

/** A code from the wire as one we know; a newer peer's unknown code is reported as "internal". */
export function remoteCode(code: string): ChannelErrorCode {
  return (CHANNEL_ERROR_CODES as readonly string[]).includes(code) ? (code as ChannelErrorCode) : "internal";
}
