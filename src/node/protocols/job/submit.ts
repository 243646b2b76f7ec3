import type { PeerId } from "@libp2p/interface";
import { MAX_SHARD_BYTES, payloadBytes, type Shard } from "../../../jobs/records.ts";
import { shardToWire } from "../../../jobs/shard-codec.ts";
import { InvalidInputError } from "../../../util/errors.ts";
import type { JobUploadHeader, SubmitResult } from "../../aggregator/api.ts";
import { encode, timeoutSignal, WIRE_VERSION } from "../../wire.ts";
import { Call, type CallContext } from "./call.ts";
import {
  headerToWire,
  MAX_SHARD_FRAME_BYTES,
  misfit,
  ShardPlanSchema,
  SubmitReplySchema,
  UPLOAD_WINDOW_BYTES,
} from "./messages.ts";

/**
 * The client side of a submission: the header, then (unless the aggregator already holds the job)
 * every shard in order within the upload window, `end`, and the aggregator's `accepted`. Replies are
 * read by a task of their own while shards are written, so an early refusal (a shard that does not
 * fit, a job nobody can run) stops the upload at once and is thrown as its typed error.
 */

/** After a failed write, how long to wait for the error frame that explains it. */
export const ERROR_GRACE_MS = 2_000;

export interface SubmitOptions {
  signal?: AbortSignal;
  /** Called as the aggregator acknowledges shards: how many so far, and the bytes they took on the wire. */
  onUploaded?: (shards: number, bytes: number) => void;
}

export async function submitJob(
  context: CallContext,
  peer: PeerId,
  header: JobUploadHeader,
  shards: AsyncIterable<Shard>,
  options: SubmitOptions = {},
): Promise<SubmitResult> {
  const plan = ShardPlanSchema.safeParse(header.plan);
  if (!plan.success) throw new InvalidInputError(`an invalid shard plan: ${plan.error.issues[0]?.message}`);
  using call = await Call.open(context, peer, "the upload", options.signal);
  let acks: Acks | undefined;
  try {
    await call.send({ v: WIRE_VERSION, type: "submit", ...headerToWire(header) });
    const first = await call.read(SubmitReplySchema);
    if (first.type === "accepted") {
      if (first.created) throw call.broken("a job created before its upload");
      call.finish();
      return { jobId: first.jobId, created: false };
    }
    if (first.type !== "upload") throw call.broken(`${first.type} before the upload began`);
    acks = new Acks(call, header.plan.shardCount, options.onUploaded);
    let i = 0;
    try {
      for await (const shard of shards) {
        const wrong =
          i >= header.plan.shardCount
            ? `more than the plan's ${header.plan.shardCount} shards`
            : misfit(header.plan, header.kind, i, shard);
        if (wrong) throw new InvalidInputError(`cannot upload the job: ${wrong}`);
        const frame = encode({ v: WIRE_VERSION, type: "shard", shard: shardToWire(shard) });
        const size = payloadBytes(shard.payload);
        if (size > MAX_SHARD_BYTES || frame.byteLength > MAX_SHARD_FRAME_BYTES) {
          throw new InvalidInputError(`shard ${i} is ${size} bytes; one shard carries at most ${MAX_SHARD_BYTES}`, {
            hint: "split the job into smaller shards",
          });
        }
        await acks.room(frame.byteLength);
        await call.sendFrame(frame);
        acks.sent(frame.byteLength);
        i += 1;
      }
      if (i < header.plan.shardCount) {
        throw new InvalidInputError(`cannot upload the job: ${i} of the plan's ${header.plan.shardCount} shards`);
      }
      await call.send({ v: WIRE_VERSION, type: "end" });
      await call.closeWrite();
    } catch (err) {
      // A write that failed because the aggregator refused and closed: its error frame says why.
      if (!(err instanceof InvalidInputError) && !call.signal.aborted) throw (await acks.refusal()) ?? err;
      throw err;
    }
    const result = await acks.accepted;
    call.finish();
    return result;
  } catch (err) {
    throw call.failure(err);
  } finally {
    acks?.stop();
  }
}

/**
 * The aggregator's replies during an upload: acknowledgements (which open the window for more
 * shards), then `accepted`, or an error frame. Runs until one of those ends it.
 */
class Acks {
  private acked = 0;
  private ackedBytes = 0;
  private sentBytes = 0;
  private readonly sizes: number[] = [];
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  readonly accepted: Promise<SubmitResult>;

  constructor(
    private readonly call: Call,
    private readonly shardCount: number,
    private readonly onUploaded: ((shards: number, bytes: number) => void) | undefined,
  ) {
    this.accepted = this.run();
    this.accepted.catch((err: Error) => {
      this.failure = err;
      this.notify();
    });
  }

  /** Waits until a frame of `bytes` fits the window (one frame always may go); throws once the replies failed. */
  async room(bytes: number): Promise<void> {
    for (;;) {
      if (this.failure) throw this.failure;
      const unacked = this.sentBytes - this.ackedBytes;
      if (unacked === 0 || unacked + bytes <= UPLOAD_WINDOW_BYTES) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  sent(bytes: number): void {
    this.sizes.push(bytes);
    this.sentBytes += bytes;
  }

  /** The refusal that ended the replies, waiting a little for it to arrive. */
  async refusal(): Promise<Error | undefined> {
    using grace = timeoutSignal(ERROR_GRACE_MS, "waiting for the refusal");
    const ended = new Promise<void>((resolve) =>
      grace.signal.addEventListener("abort", () => resolve(), { once: true }),
    );
    await Promise.race([
      this.accepted.then(
        () => undefined,
        () => undefined,
      ),
      ended,
    ]);
    return this.failure;
  }

  stop(): void {
    this.notify();
  }

  private async run(): Promise<SubmitResult> {
    for (;;) {
      const reply = await this.call.read(SubmitReplySchema);
      if (reply.type === "ack") {
        if (reply.shards <= this.acked || reply.shards > this.sizes.length) {
          throw this.call.broken(
            `an acknowledgement of ${reply.shards} shards after ${this.acked} of ${this.sizes.length} sent`,
          );
        }
        for (; this.acked < reply.shards; this.acked++) this.ackedBytes += this.sizes[this.acked] as number;
        this.onUploaded?.(this.acked, this.ackedBytes);
        this.notify();
        continue;
      }
      if (reply.type !== "accepted" || !reply.created || this.acked !== this.shardCount) {
        throw this.call.broken(`${reply.type} after ${this.acked} of ${this.shardCount} shards were acknowledged`);
      }
      return { jobId: reply.jobId, created: true };
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}
