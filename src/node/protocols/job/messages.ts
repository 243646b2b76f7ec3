import { z } from "zod";
import { MAX_JOB_RECORDS, MAX_SHARD_BYTES, MAX_SHARDS, type Shard, type ShardPlan } from "../../../jobs/records.ts";
import { JOB_STATES, SHARD_STATES } from "../../../jobs/states.ts";
import { MAX_INVOICE_CHARS } from "../../../payments/lightning/invoice.ts";
import type { JobQuote, JobUploadHeader } from "../../aggregator/api.ts";
import { ErrorMessageSchema, WIRE_VERSION } from "../../wire.ts";

/**
 * Messages of /infernet/job/1.0.0, between a client and an aggregator. One stream per call; the
 * client's first frame says which:
 *
 * - `submit {spec, plan, kind}`: the aggregator answers `accepted {jobId, created: false}` when the
 *   idempotency key names a job it holds (the client sends nothing more), else `upload`; the client
 *   then sends one `shard` frame per shard of the plan, in order, and `end`, and half-closes. The
 *   aggregator acknowledges each shard it has taken (`ack {shards}`: how many so far), which is the
 *   upload's flow control (see `UPLOAD_WINDOW_BYTES`), and answers `accepted {jobId, created: true}`
 *   once the job is stored.
 * - `watch {jobId}`: `progress` and `finished` frames (see `JobEvent`), `finished` last.
 * - `output {jobId, offset}`: `file {bytes, sha256, records, offset}` (the offset it starts from),
 *   `chunk {data}` frames up to the end of the file, then `end`.
 * - `report {jobId}`: one `report` frame.
 *
 * Either side may send an `error` frame at any point instead; the aggregator sends `keepalive` frames
 * (nothing in them) whenever it has written nothing for `KEEPALIVE_MS`, so a client tells a quiet
 * aggregator from a dead one. Shards travel as `shardToWire` values, checked with `shardFromWire`.
 */

/** Largest first frame of a call (a job spec is at most 64 KiB of JSON; the rest is small). */
export const MAX_REQUEST_FRAME_BYTES = 256 * 1024;
/** Largest frame a client sends: a shard's payload (at most `MAX_SHARD_BYTES`) plus its CBOR envelope. */
export const MAX_SHARD_FRAME_BYTES = 2 * MAX_SHARD_BYTES;
/** Largest report a client accepts (a 100,000-shard job with a few copies each fits). */
export const MAX_REPORT_BYTES = 48 * 1024 ** 2;
/** Largest frame an aggregator sends: the report, plus its envelope. */
export const MAX_RESPONSE_FRAME_BYTES = MAX_REPORT_BYTES + 64 * 1024;
/** Bytes of output file per `chunk` frame. */
export const OUTPUT_CHUNK_BYTES = 1024 ** 2;
/**
 * Most shard bytes a client sends ahead of the aggregator's acknowledgements (one shard always may
 * go). Why: frames that arrive are buffered until read, and the aggregator reads a shard only as fast
 * as it stores it; more than one frame's worth unread fails the stream (see `FrameStream`).
 */
export const UPLOAD_WINDOW_BYTES = MAX_SHARD_FRAME_BYTES;
/** Longest job id, idempotency key aside (aggregators use UUIDs). */
export const MAX_JOB_ID_CHARS = 128;
/** Longest hint carried by an error frame. */
export const MAX_HINT_CHARS = 512;
/** Longest reason a failed job's summary carries (longer ones are cut). */
export const MAX_JOB_ERROR_CHARS = 4096;
/** Most providers a quote may say could take copies (a count, bounded like any peer's number). */
export const MAX_QUOTE_PROVIDERS = 100_000;

/** Error codes an aggregator sends; `protocol` and `integrity` are the client's own. */
export const JOB_ERROR_CODES = [
  "unsupported-version",
  "bad-request",
  "unavailable",
  "busy",
  "timeout",
  "not-found",
  "idempotency-conflict",
  "invalid-input",
  "model-not-served",
  "price-too-low",
  "deadline-too-short",
  "insufficient-funds",
  "no-provider",
  "too-large",
  "internal",
  "protocol",
] as const;
export type JobErrorCode = (typeof JOB_ERROR_CODES)[number];

const v = z.literal(WIRE_VERSION);
const count = z.int().min(0).max(Number.MAX_SAFE_INTEGER);
const jobId = z.string().min(1).max(MAX_JOB_ID_CHARS);
const sha256 = z.string().regex(/^[0-9a-f]{64}$/, "a lowercase hex sha256");
const bytes = z.custom<Uint8Array>((x) => x instanceof Uint8Array, "must be a byte string");

export const ShardKindSchema = z.enum(["prompts", "images", "tensor"]);

/** A splitter's plan: its shard count must be what the record count and shard size make. */
export const ShardPlanSchema = z
  .strictObject({
    records: z.int().min(1).max(MAX_JOB_RECORDS),
    shardSize: z.int().min(1).max(MAX_JOB_RECORDS),
    shardCount: z.int().min(1).max(MAX_SHARDS),
  })
  .refine((p) => p.shardCount === Math.ceil(p.records / p.shardSize), {
    message: "shardCount must be records / shardSize, rounded up",
  });

export const SubmitRequestSchema = z.object({
  v,
  type: z.literal("submit"),
  /** Checked by `parseJobSpec`. */
  spec: z.unknown(),
  plan: ShardPlanSchema,
  kind: ShardKindSchema,
  pay: z.literal("lightning").optional(),
});
/** What a job would cost and lock, asked before deciding to upload it (the same header as a submit). */
export const QuoteRequestSchema = SubmitRequestSchema.extend({ type: z.literal("quote") });
const WatchRequestSchema = z.object({ v, type: z.literal("watch"), jobId });
const OutputRequestSchema = z.object({ v, type: z.literal("output"), jobId, offset: count });
const ReportRequestSchema = z.object({ v, type: z.literal("report"), jobId });

export const JobRequestSchema = z.discriminatedUnion("type", [
  SubmitRequestSchema,
  QuoteRequestSchema,
  WatchRequestSchema,
  OutputRequestSchema,
  ReportRequestSchema,
]);
export type JobRequest = z.infer<typeof JobRequestSchema>;

/** What a client sends during an upload. */
export const UploadFrameSchema = z.discriminatedUnion("type", [
  /** Checked by `shardFromWire` and `checkShardFits`. */
  z.object({ v, type: z.literal("shard"), shard: z.unknown() }),
  z.object({ v, type: z.literal("end") }),
]);

/** An amount of msat as a decimal string (a bigint does not fit every CBOR reader's number). */
const msatText = z.string().regex(/^\d{1,19}$/);

/** An error frame, with what a client needs to act on it. */
export const JobErrorSchema = ErrorMessageSchema.extend({
  hint: z.string().max(MAX_HINT_CHARS).optional(),
  /** With `price-too-low`: the least `maxPriceMsat` enough providers accept. */
  neededMsat: count.optional(),
  /** With `deadline-too-short`: when the job would finish, Unix ms. */
  expectedFinishMs: count.optional(),
  /** With `insufficient-funds`: the quote, and the client's credit at the aggregator, msat (decimal). */
  neededMsatText: msatText.optional(),
  balanceMsatText: msatText.optional(),
});
export type JobErrorFrame = z.infer<typeof JobErrorSchema>;

/** The aggregator's answer to a `quote` request (see `JobQuote`); msat as decimal strings. */
export const QuoteSchema = z.object({
  estimatedMsatText: msatText,
  lockedMsatText: msatText,
  feePercent: z.number().min(0).max(100),
  providers: z.int().min(0).max(MAX_QUOTE_PROVIDERS),
  invoice: z.string().min(1).max(MAX_INVOICE_CHARS).optional(),
});

const Keepalive = z.object({ v, type: z.literal("keepalive") });
const Accepted = z.object({ v, type: z.literal("accepted"), jobId, created: z.boolean() });

/** Answers during a submission. */
export const SubmitReplySchema = z.discriminatedUnion("type", [
  Keepalive,
  Accepted,
  z.object({ v, type: z.literal("upload") }),
  z.object({ v, type: z.literal("ack"), shards: z.int().min(1).max(MAX_SHARDS) }),
  JobErrorSchema,
]);

export const JobSummarySchema = z.strictObject({
  id: jobId,
  state: z.enum(JOB_STATES),
  shardCount: z.int().min(1).max(MAX_SHARDS),
  shardsReturned: z.int().min(0).max(MAX_SHARDS),
  shardsVerified: z.int().min(0).max(MAX_SHARDS),
  retries: count,
  error: z.string().max(MAX_JOB_ERROR_CHARS).optional(),
  late: z.boolean().optional(),
});

const OutputSummarySchema = z.strictObject({ bytes: count, sha256, records: z.int().min(0).max(MAX_JOB_RECORDS) });

const Progress = z
  .object({ v, type: z.literal("progress"), job: JobSummarySchema, shards: bytes })
  .refine((p) => p.shards.length === p.job.shardCount, { message: "one shard state per shard" })
  .refine((p) => p.shards.every((s) => s < SHARD_STATES.length), { message: "an unknown shard state" });

/** The watch stream. (`discriminatedUnion` takes no refined members, so this is a plain union.) */
export const WatchReplySchema = z.union([
  Keepalive,
  Progress,
  z.object({ v, type: z.literal("finished"), job: JobSummarySchema, output: OutputSummarySchema.optional() }),
  JobErrorSchema,
]);

export const OutputReplySchema = z.discriminatedUnion("type", [
  Keepalive,
  z.object({ v, type: z.literal("file"), ...OutputSummarySchema.shape, offset: count }),
  z.object({
    v,
    type: z.literal("chunk"),
    data: bytes.refine((d) => d.byteLength >= 1 && d.byteLength <= OUTPUT_CHUNK_BYTES, "1 byte to a chunk's size"),
  }),
  z.object({ v, type: z.literal("end") }),
  JobErrorSchema,
]);

/**
 * A report, checked loosely: it is JSON-like data for people and later tools, so its top-level
 * shape is checked and the rest passes through.
 */
const ReportSchema = z.looseObject({
  job: z.looseObject({ id: jobId, state: z.enum(JOB_STATES), shardCount: count }),
  shards: z.array(z.looseObject({ index: count, state: z.enum(SHARD_STATES), copies: z.array(z.looseObject({})) })),
  providers: z.array(z.looseObject({ provider: z.string() })),
  retries: count,
  wallMs: z.number(),
});

export const QuoteReplySchema = z.discriminatedUnion("type", [
  Keepalive,
  QuoteSchema.extend({ v, type: z.literal("quote") }),
  JobErrorSchema,
]);

export function quoteToWire(q: JobQuote): z.infer<typeof QuoteSchema> {
  return {
    estimatedMsatText: q.estimatedMsat.toString(),
    lockedMsatText: q.lockedMsat.toString(),
    feePercent: q.feePercent,
    providers: q.providers,
    ...(q.invoice ? { invoice: q.invoice } : {}),
  };
}

export function quoteFromWire(w: z.infer<typeof QuoteSchema>): JobQuote {
  return {
    estimatedMsat: BigInt(w.estimatedMsatText),
    lockedMsat: BigInt(w.lockedMsatText),
    feePercent: w.feePercent,
    providers: w.providers,
    ...(w.invoice ? { invoice: w.invoice } : {}),
  };
}

/** A job header as the wire carries it (`pay` only when set). */
export function headerToWire(header: JobUploadHeader) {
  return { spec: header.spec, plan: header.plan, kind: header.kind, ...(header.pay ? { pay: header.pay } : {}) };
}

export const ReportReplySchema = z.discriminatedUnion("type", [
  Keepalive,
  z.object({ v, type: z.literal("report"), report: ReportSchema }),
  JobErrorSchema,
]);

/**
 * Whether shard `i` of an upload is the one the plan says: its index, first record, record count and
 * kind. Returns what is wrong, or undefined.
 */
export function misfit(plan: ShardPlan, kind: Shard["payload"]["kind"], i: number, shard: Shard): string | undefined {
  const start = i * plan.shardSize;
  const records = Math.min(plan.shardSize, plan.records - start);
  if (shard.index !== i) return `shard ${shard.index} came where shard ${i} was due`;
  if (shard.start !== start || shard.count !== records) {
    return `shard ${i} holds records ${shard.start} to ${shard.start + shard.count - 1}; the plan says ${start} to ${start + records - 1}`;
  }
  if (shard.payload.kind !== kind) return `shard ${i} carries ${shard.payload.kind}; the job carries ${kind}`;
  return undefined;
}
