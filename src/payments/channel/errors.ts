import { InfernetError } from "../../util/errors.ts";

/**
 * Why a channel operation was refused. Each failure has its own class (tests match on `name`) and a
 * `code` that travels in the protocol's error frame, so the payer learns exactly why the payee said no.
 */
export const CHANNEL_ERROR_CODES = [
  "unknown-channel",
  "replayed",
  "sequence",
  "amount",
  "signature",
  "malformed",
  "closed",
  "expired",
  "refused",
  "timeout",
  "busy",
  "internal",
  "protocol",
  "unsupported-version",
] as const;
export type ChannelErrorCode = (typeof CHANNEL_ERROR_CODES)[number];

export class ChannelError extends InfernetError {
  readonly code: ChannelErrorCode = "internal";
}

/** No channel with this id (funding txid:vout) is known here. */
export class UnknownChannelError extends ChannelError {
  override readonly code = "unknown-channel";
}

/** An update with a sequence at or below the last accepted one: a replayed or old state. */
export class ReplayedUpdateError extends ChannelError {
  override readonly code = "replayed";
}

/** An update that skips sequence numbers (the payer is ahead of what this side accepted). */
export class SequenceGapError extends ChannelError {
  override readonly code = "sequence";
}

/** An amount that does not increase, exceeds the capacity, or differs from what was expected. */
export class InvalidAmountError extends ChannelError {
  override readonly code = "amount";
}

/** A signature that does not verify: tampered state or the wrong key. */
export class BadSignatureError extends ChannelError {
  override readonly code = "signature";
}

/** A commitment or close transaction that does not parse or is not the one the channel's terms produce. */
export class MalformedCommitmentError extends ChannelError {
  override readonly code = "malformed";
}

/** The channel is closing or closed: it takes no more payments. */
export class ChannelClosedError extends ChannelError {
  override readonly code = "closed";
}

/** Too close to the refund height: the payee must close now, so it counts no new payment. */
export class ChannelExpiredError extends ChannelError {
  override readonly code = "expired";
}

/** The channel's proposed terms (network, capacity, fee, refund height, keys) are not acceptable. */
export class ChannelRefusedError extends ChannelError {
  override readonly code = "refused";
}

/** The peer did not answer in time; the last state both signed is kept. */
export class ChannelTimeoutError extends ChannelError {
  override readonly code = "timeout";
}

/** The peer answered with a refusal (`code` is the one it sent) or broke the protocol. */
export class RemoteChannelError extends ChannelError {
  override readonly code: ChannelErrorCode;
  readonly peer: string;

  constructor(code: ChannelErrorCode, peer: string, message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.code = code;
    this.peer = peer;
  }
}
