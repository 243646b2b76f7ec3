import type { Stream } from "@libp2p/interface";
import { AbortedError, errorMessage, TimeoutError } from "../../util/errors.ts";
import { abortable, type FrameSink, timeoutSignal, type WireMessage, writeMessage } from "../wire.ts";

/**
 * One inbound request's life on a provider (the infer and shard protocols): its signal aborts when
 * the client closes or resets the stream (it is gone: stop computing for it), when the request does
 * not arrive in time, when its deadline passes, or when the provider stops (`running` holds every
 * job's controller for that). Timers, not AbortSignal.timeout: a cleared timer keeps nothing of the
 * request alive. Disposing clears the timer and the listener.
 */
export class InboundJob implements Disposable {
  private readonly controller = new AbortController();
  /** The abort reason when the client went away. */
  readonly gone = new AbortedError("the client closed the stream");
  private deadline: ReturnType<typeof setTimeout>;
  private readonly onClose = () => this.controller.abort(this.gone);

  constructor(
    private readonly stream: Stream,
    private readonly running: Set<AbortController>,
    readTimeoutMs: number,
    /** What must arrive ("request", "shard"), for the timeout's message. */
    what: string,
  ) {
    stream.addEventListener("close", this.onClose);
    running.add(this.controller);
    this.deadline = setTimeout(
      () => this.controller.abort(new TimeoutError(`no ${what} arrived within ${readTimeoutMs} ms`)),
      readTimeoutMs,
    );
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The request arrived: from now on the whole job has `budgetMs`. */
  startBudget(budgetMs: number): void {
    clearTimeout(this.deadline);
    this.deadline = setTimeout(
      () => this.controller.abort(new TimeoutError(`the deadline of ${budgetMs} ms passed`)),
      budgetMs,
    );
  }

  /** Stops the job as if the client had gone (a write to it failed). */
  clientLeft(): void {
    this.controller.abort(this.gone);
  }

  /** Whether the job ended because the client went away (then there is nobody to answer). */
  get clientGone(): boolean {
    return this.signal.reason === this.gone;
  }

  /** Why the job failed: the abort's reason when it was aborted, else `err`. */
  reason(err: unknown): unknown {
    return this.signal.aborted ? this.signal.reason : err;
  }

  /** Done: closes the stream from this side (bounded), no longer treating its close as the client leaving. */
  async finish(closeTimeoutMs: number): Promise<void> {
    this.stream.removeEventListener("close", this.onClose);
    using flush = timeoutSignal(closeTimeoutMs, "closing the stream");
    await abortable(this.stream.close(), flush.signal).catch((err: Error) => this.stream.abort(err));
  }

  [Symbol.dispose](): void {
    clearTimeout(this.deadline);
    this.stream.removeEventListener("close", this.onClose);
    this.running.delete(this.controller);
  }
}

/**
 * Answers with an error frame when the stream can still carry one, then closes; else resets it. A
 * client still sending (the rest of a refused request) gets until the timeout to close its side,
 * then the stream is reset, so a refused stream never lingers half-open.
 */
export async function answerError(
  stream: Stream,
  lp: FrameSink,
  frame: WireMessage,
  closeTimeoutMs: number,
): Promise<void> {
  try {
    using flush = timeoutSignal(closeTimeoutMs, "sending the error");
    await writeMessage(lp, frame, { signal: flush.signal });
    await abortable(stream.close(), flush.signal);
    await abortable(closed(stream), flush.signal);
  } catch (cause) {
    stream.abort(cause instanceof Error ? cause : new Error(errorMessage(cause)));
  }
}

/** Resolves once `stream` is closed both ways (or reset). */
function closed(stream: Stream): Promise<void> {
  if (stream.status !== "open" && stream.status !== "closing") return Promise.resolve();
  return new Promise<void>((resolve) => stream.addEventListener("close", () => resolve(), { once: true }));
}
