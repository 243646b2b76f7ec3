import { InfernetError } from "../../../util/errors.ts";
import type { RemoteShardErrorCode } from "./messages.ts";

/**
 * A shard failed on `peer`: the provider refused or failed it (`code` is the one it sent), the peer
 * broke the protocol or the stream ended before `done` (`protocol`), or what it sent does not fit the
 * shard (`bad-result`: wrong record count, shape, type or order), so its lease should be lost.
 */
export class RemoteShardError extends InfernetError {
  readonly code: RemoteShardErrorCode;
  readonly peer: string;

  constructor(
    code: RemoteShardErrorCode,
    peer: string,
    message: string,
    options: { hint?: string; cause?: unknown } = {},
  ) {
    super(message, options);
    this.code = code;
    this.peer = peer;
  }
}
