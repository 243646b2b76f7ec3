import { InfernetError } from "../../../util/errors.ts";
import type { RemoteErrorCode } from "./messages.ts";

/**
 * A remote inference failed on `peer`: the provider refused or failed the request (`code` is the one it
 * sent), or the peer broke the protocol or the stream ended before `done` (`protocol`).
 */
export class RemoteInferenceError extends InfernetError {
  readonly code: RemoteErrorCode;
  readonly peer: string;

  constructor(code: RemoteErrorCode, peer: string, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options);
    this.code = code;
    this.peer = peer;
  }
}
