/**
 * Typed failures. Library code throws these with a plain statement of what went wrong and,
 * where the user can act on it, a `hint`; `cli/exit.ts` is the one place that turns them into
 * words on the terminal and an exit code. Tests match on `name`.
 */
export class InfernetError extends Error {
  /** What the user can do about it, in one short sentence. */
  readonly hint: string | undefined;

  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
  }
}

/** A bad flag, a missing argument, a value of the wrong type. */
export class UsageError extends InfernetError {}

/** A model name that is neither in the catalog nor a file on disk. */
export class UnknownModelError extends InfernetError {}

/** A file the user named does not exist or cannot be read. */
export class FileNotFoundError extends InfernetError {}

/** Input data that cannot be used: unreadable image, wrong tensor shape, empty prompt. */
export class InvalidInputError extends InfernetError {}

/** A model file that is not what it claims to be: bad format, wrong sha256, truncated. */
export class IntegrityError extends InfernetError {}

/** A download that could not complete (network, HTTP status, no source reachable). */
export class DownloadError extends InfernetError {}

/** The runtime could not load a model or run it. */
export class RuntimeError extends InfernetError {}

/** Configuration that cannot work: bad value, unwritable home directory. */
export class ConfigError extends InfernetError {}

/** The operation was cancelled by the user (Ctrl-C) or by a deadline. */
export class AbortedError extends InfernetError {}

/** No peer on the network can do what was asked (model not served, price too low, all failed). */
export class NoProviderError extends InfernetError {}
/** Every provider tried said it was busy (all slots and queue places taken): worth trying again shortly. */
export class ProvidersBusyError extends NoProviderError {}

/** A command needs a running node (`infernet start`) and none is running. */
export class NodeNotRunningError extends InfernetError {}

/** A deadline passed. */
export class TimeoutError extends InfernetError {}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
