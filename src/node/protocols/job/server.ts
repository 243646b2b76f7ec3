import { open } from "node:fs/promises";
import type { Connection, Stream } from "@libp2p/interface";
import type { Shard } from "../../../jobs/records.ts";
import { shardFromWire } from "../../../jobs/shard-codec.ts";
import { parseJobSpec } from "../../../jobs/spec.ts";
import { AbortedError, errorMessage, TimeoutError } from "../../../util/errors.ts";
import { logger } from "../../../util/logger.ts";
import type { AggregatorApi, JobEvent, JobSummary, JobUploadHeader } from "../../aggregator/api.ts";
import {
  abortable,
  clip,
  encode,
  type FrameStream,
  ProtocolError,
  parseMessage,
  readMessage,
  timeoutSignal,
  WIRE_VERSION,
  wireStream,
} from "../../wire.ts";
import { answerError } from "../inbound.ts";
import { Refusal, toErrorFrame } from "./errors.ts";
import {
  type JobRequest,
  JobRequestSchema,
  MAX_JOB_ERROR_CHARS,
  MAX_REQUEST_FRAME_BYTES,
  MAX_RESPONSE_FRAME_BYTES,
  MAX_SHARD_FRAME_BYTES,
  misfit,
  OUTPUT_CHUNK_BYTES,
  quoteToWire,
  UploadFrameSchema,
} from "./messages.ts";
import { Replies } from "./replies.ts";

/**
 * The aggregator side of /infernet/job/1.0.0: one call per stream. The caller is the peer the
 * connection authenticated, never a claim in a message; every request is checked before the
 * aggregator sees it, and an upload's shards reach it one at a time, each checked against the plan,
 * the last only once `end` has arrived and the client has closed its side, so a hostile or broken
 * upload never leaves a stored job. A call ends with its last frame, or with an error frame.
 */
const log = logger("node:job");

/** Longest wait to flush a final frame (an error or after the last reply) before the stream is reset. */
export const CLOSE_TIMEOUT_MS = 5_000;

export interface JobServerSettings {
  aggregator: () => AggregatorApi | undefined;
  /** Uploads served at once; one more is refused with "busy". */
  maxUploads: number;
  /** Longest wait for each frame a client sends (the request, each shard, `end`). */
  frameTimeoutMs: number;
  /** A keepalive frame goes out when nothing was written for this long. */
  keepaliveMs: number;
}

export class JobServer {
  private uploads = 0;
  /** Calls being served; each is aborted when the service stops. */
  private readonly calls = new Set<AbortController>();

  constructor(private readonly settings: JobServerSettings) {}

  stop(): void {
    for (const call of this.calls) call.abort(new AbortedError("the aggregator is stopping"));
  }

  readonly handle = async (stream: Stream, connection: Connection): Promise<void> => {
    const client = connection.remotePeer.toString();
    const lp = wireStream(stream, MAX_SHARD_FRAME_BYTES);
    const call = new AbortController();
    const { signal } = call;
    const gone = new AbortedError("the client closed the stream");
    const onClose = () => call.abort(gone);
    stream.addEventListener("close", onClose);
    this.calls.add(call);
    // A failed write (a keepalive included) means the client is gone: stop working for it.
    const out = new Replies(lp, signal, this.settings.keepaliveMs, () => call.abort(gone));
    let type = "request";
    try {
      const request = await this.within(call, "the request", async () => {
        const frame = await lp.read({ signal });
        if (frame.byteLength > MAX_REQUEST_FRAME_BYTES) {
          throw new ProtocolError(
            "too-large",
            `a ${frame.byteLength}-byte request; at most ${MAX_REQUEST_FRAME_BYTES}`,
          );
        }
        return parseMessage(frame, JobRequestSchema);
      });
      type = request.type;
      const api = this.settings.aggregator();
      if (!api) throw new Refusal("unavailable", "this node is not running an aggregator now");
      log.debug("call", { client, type });
      await this.serve(request, api, client, lp, out, call);
      out.stop();
      stream.removeEventListener("close", onClose);
      using flush = timeoutSignal(CLOSE_TIMEOUT_MS, "closing the stream");
      await abortable(stream.close(), flush.signal).catch((err: Error) => stream.abort(err));
    } catch (err) {
      out.stop();
      if (signal.reason === gone) stream.abort(gone);
      else await fail(stream, lp, signal.aborted ? signal.reason : err, client, type);
    } finally {
      stream.removeEventListener("close", onClose);
      this.calls.delete(call);
    }
  };

  private async serve(
    request: JobRequest,
    api: AggregatorApi,
    client: string,
    lp: FrameStream,
    out: Replies,
    call: AbortController,
  ): Promise<void> {
    switch (request.type) {
      case "submit": {
        const header: JobUploadHeader = {
          spec: parseJobSpec(request.spec),
          plan: request.plan,
          kind: request.kind,
          ...(request.pay ? { pay: request.pay } : {}),
        };
        await this.submit(header, api, client, lp, out, call);
        return;
      }
      case "quote": {
        const header: JobUploadHeader = {
          spec: parseJobSpec(request.spec),
          plan: request.plan,
          kind: request.kind,
          ...(request.pay ? { pay: request.pay } : {}),
        };
        const quote = await api.quote(header, client, call.signal);
        await out.send({ v: WIRE_VERSION, type: "quote", ...quoteToWire(quote) });
        return;
      }
      case "watch":
        await watch(request.jobId, api, client, out, call.signal);
        return;
      case "output":
        await output(request.jobId, request.offset, api, client, out);
        return;
      case "report": {
        const frame = encode({ v: WIRE_VERSION, type: "report", report: api.report(request.jobId, client) });
        if (frame.byteLength > MAX_RESPONSE_FRAME_BYTES) {
          throw new Refusal(
            "too-large",
            `the report is ${frame.byteLength} bytes; a frame holds ${MAX_RESPONSE_FRAME_BYTES}`,
          );
        }
        await out.sendFrame(frame);
        return;
      }
    }
  }

  private async submit(
    header: JobUploadHeader,
    api: AggregatorApi,
    client: string,
    lp: FrameStream,
    out: Replies,
    call: AbortController,
  ): Promise<void> {
    const existing = api.existing(header.spec, client);
    if (existing) {
      await out.send({ v: WIRE_VERSION, type: "accepted", jobId: existing.jobId, created: false });
      return;
    }
    if (this.uploads >= this.settings.maxUploads) {
      throw new Refusal("busy", `${this.uploads} uploads are in progress, the most this aggregator takes at once`);
    }
    this.uploads += 1;
    try {
      // The checks come before the go-ahead: a job that could never run is refused before any shard.
      const quote = await api.quote(header, client, call.signal);
      await out.send({ v: WIRE_VERSION, type: "upload" });
      let failure: unknown;
      const shards = this.receive(header, lp, out, call, (err) => {
        failure = err;
      });
      let result: Awaited<ReturnType<AggregatorApi["submit"]>>;
      try {
        result = await api.submit(header, shards, client, call.signal, quote);
      } catch (err) {
        // The upload's own refusal, not however the aggregator wrapped it.
        throw failure ?? err;
      }
      if (failure) throw failure;
      await out.send({ v: WIRE_VERSION, type: "accepted", jobId: result.jobId, created: true });
    } finally {
      this.uploads -= 1;
    }
  }

  /**
   * The upload's shards, each checked against the plan and acknowledged as it is read. Each is handed
   * on only once the next frame has been read and checked, so a bad frame stops the upload before the
   * aggregator has the last shard, which is when it would store the job.
   */
  private async *receive(
    header: JobUploadHeader,
    lp: FrameStream,
    out: Replies,
    call: AbortController,
    onFail: (err: unknown) => void,
  ): AsyncGenerator<Shard> {
    const { plan, kind } = header;
    const { signal } = call;
    try {
      let pending: Shard | undefined;
      for (let i = 0; i < plan.shardCount; i++) {
        const frame = await this.within(call, `shard ${i}`, () => readMessage(lp, UploadFrameSchema, { signal }));
        if (frame.type === "end")
          throw new Refusal("bad-request", `end after ${i} of the plan's ${plan.shardCount} shards`);
        const shard = toShard(frame.shard);
        const wrong = misfit(plan, kind, i, shard);
        if (wrong) throw new Refusal("invalid-input", wrong);
        await out.send({ v: WIRE_VERSION, type: "ack", shards: i + 1 });
        if (pending) yield pending;
        pending = shard;
      }
      const end = await this.within(call, "end", () => readMessage(lp, UploadFrameSchema, { signal }));
      if (end.type !== "end") throw new Refusal("bad-request", `more shards than the plan's ${plan.shardCount}`);
      await this.within(call, "the end of the upload", () => ended(lp, signal));
      if (pending) yield pending;
    } catch (err) {
      onFail(err);
      throw err;
    }
  }

  /** Runs `read`, failing the call with `TimeoutError` when it takes longer than `frameTimeoutMs`. */
  private async within<T>(call: AbortController, what: string, read: () => Promise<T>): Promise<T> {
    const ms = this.settings.frameTimeoutMs;
    const timer = setTimeout(() => call.abort(new TimeoutError(`${what} did not arrive within ${ms} ms`)), ms);
    try {
      return await read();
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The job's events until `finished`, as frames. */
async function watch(
  jobId: string,
  api: AggregatorApi,
  client: string,
  out: Replies,
  signal: AbortSignal,
): Promise<void> {
  for await (const event of api.watch(jobId, client, signal)) {
    await out.send(eventToWire(event));
    if (event.type === "finished") return;
  }
  throw new Refusal("internal", `the events of job ${jobId} ended before it finished`);
}

function eventToWire(event: JobEvent): { v: number; type: string; [field: string]: unknown } {
  const job = summaryToWire(event.job);
  if (event.type === "progress") return { v: WIRE_VERSION, type: "progress", job, shards: event.shards };
  const output = event.output
    ? { bytes: event.output.bytes, sha256: event.output.sha256, records: event.output.records }
    : undefined;
  return { v: WIRE_VERSION, type: "finished", job, output };
}

/** Exactly the summary's fields (the schema on the other side is strict), the reason cut to its limit. */
function summaryToWire(job: JobSummary): JobSummary {
  const { id, state, shardCount, shardsReturned, shardsVerified, retries, error, late } = job;
  const reason = error === undefined ? undefined : clip(error, MAX_JOB_ERROR_CHARS);
  return { id, state, shardCount, shardsReturned, shardsVerified, retries, error: reason, late };
}

/** The output file from `offset` (from 0 when the client holds more than the file), in chunks, then `end`. */
async function output(jobId: string, offset: number, api: AggregatorApi, client: string, out: Replies): Promise<void> {
  const info = await api.output(jobId, client);
  const from = offset <= info.bytes ? offset : 0;
  const { bytes, sha256, records } = info;
  await out.send({ v: WIRE_VERSION, type: "file", bytes, sha256, records, offset: from });
  const file = await open(info.path, "r");
  try {
    // One buffer will do: each chunk is copied into its frame before the next read.
    const buffer = new Uint8Array(OUTPUT_CHUNK_BYTES);
    for (let at = from; at < bytes; ) {
      const { bytesRead } = await file.read(buffer, 0, Math.min(OUTPUT_CHUNK_BYTES, bytes - at), at);
      if (bytesRead === 0) throw new Error(`the output of job ${jobId} is shorter than its ${bytes} bytes`);
      await out.send({ v: WIRE_VERSION, type: "chunk", data: buffer.subarray(0, bytesRead) });
      at += bytesRead;
    }
  } finally {
    await file.close();
  }
  await out.send({ v: WIRE_VERSION, type: "end" });
}

function toShard(value: unknown): Shard {
  try {
    return shardFromWire(value);
  } catch (cause) {
    throw new Refusal("invalid-input", errorMessage(cause));
  }
}

/** Resolves once the client has closed its side with no frame after `end`. */
async function ended(lp: FrameStream, signal: AbortSignal): Promise<void> {
  try {
    await lp.read({ signal });
  } catch (err) {
    if (err instanceof ProtocolError && err.code === "ended") return;
    throw err;
  }
  throw new Refusal("bad-request", "a frame after end");
}

/** Answers with an error frame when the stream can still carry one, then closes; else resets it. */
async function fail(stream: Stream, lp: FrameStream, err: unknown, client: string, type: string): Promise<void> {
  const frame = toErrorFrame(err);
  if (frame.code === "internal") log.warn("job call failed", { client, type, error: err });
  else log.debug("job call refused", { client, type, code: frame.code, message: frame.message });
  await answerError(stream, lp, frame, CLOSE_TIMEOUT_MS);
}
