import { z } from "zod";
import { MAX_JOB_RECORDS, MAX_SHARD_BYTES, MAX_SHARDS } from "../../jobs/records.ts";
import { JobSpecSchema } from "../../jobs/spec.ts";
import type { JobEvent, JobQuote } from "../aggregator/api.ts";

/**
 * The control API's batch-job endpoints (HTTP over the node's Unix socket, see protocol.ts):
 *
 * - `POST /v1/jobs`: NDJSON body, first a `JobUploadLine`, then one line per shard, in order: the
 *   shard's CBOR (`encode(shardToWire(shard))`) as base64. Answers `{jobId, created}`.
 * - `POST /v1/jobs/quote`: a `JobUploadLine` as JSON; answers the aggregator's `QuoteLine`.
 * - `GET /v1/jobs/:id/events?aggregator=PEER&addr=MULTIADDR...`: NDJSON `JobStreamLine`s until
 *   `finished` (heartbeats while quiet, `reconnecting` when the aggregator was lost and is retried).
 * - `GET /v1/jobs/:id/output?aggregator=PEER&offset=N`: the merged output's bytes from `offset`, with
 *   its size, sha256 and record count in `OUTPUT_HEADERS`.
 * - `GET /v1/jobs/:id/report?aggregator=PEER`: the job report (JSON).
 * - `GET /v1/aggregators`: aggregators found on the network, with their fees.
 *
 * `addr` query parameters carry the aggregator's known addresses (recorded at submission), so the
 * node can dial it without discovery.
 */

export const JOBS_PATH = "/v1/jobs";
export const QUOTE_PATH = "/v1/jobs/quote";
/** Longest body of a quote request: a job header is a few kB. */
export const MAX_QUOTE_BODY_BYTES = 64 * 1024;
export const AGGREGATORS_PATH = "/v1/aggregators";

/** Longest peer id or multiaddr accepted in a request. */
export const MAX_PEER_TEXT_CHARS = 1024;
/** Most aggregator addresses in one request. */
export const MAX_AGGREGATOR_ADDRS = 32;
/** Longest job id in a path (aggregators use UUIDs). */
export const MAX_JOB_ID_CHARS = 128;
/** Longest line of an upload: a shard at its byte limit, CBOR-wrapped, in base64 (4 chars per 3 bytes). */
export const MAX_UPLOAD_LINE_CHARS = Math.ceil((2 * MAX_SHARD_BYTES * 4) / 3) + 1024;
/** Largest upload body: every shard of the largest job at its limit would be far more; this is what the socket takes. */
export const MAX_JOB_UPLOAD_BYTES = 8 * 1024 ** 3;

/** Response headers of the output endpoint. */
export const OUTPUT_HEADERS = {
  bytes: "x-infernet-output-bytes",
  sha256: "x-infernet-output-sha256",
  records: "x-infernet-output-records",
} as const;

export const AggregatorRefSchema = z.strictObject({
  peerId: z.string().min(1).max(MAX_PEER_TEXT_CHARS),
  addrs: z.array(z.string().min(1).max(MAX_PEER_TEXT_CHARS)).max(MAX_AGGREGATOR_ADDRS),
});

/** The first line of an upload: where to and what (see `JobUploadHeader`). */
export const JobUploadLineSchema = z.strictObject({
  aggregator: AggregatorRefSchema,
  spec: JobSpecSchema,
  plan: z.strictObject({
    records: z.int().min(1).max(MAX_JOB_RECORDS),
    shardSize: z.int().min(1).max(MAX_JOB_RECORDS),
    shardCount: z.int().min(1).max(MAX_SHARDS),
  }),
  kind: z.enum(["prompts", "images", "tensor"]),
  pay: z.literal("lightning").optional(),
});
export type JobUploadLine = z.input<typeof JobUploadLineSchema>;

/** A `JobQuote` as JSON: msat as decimal strings. */
export interface QuoteLine {
  estimatedMsat: string;
  lockedMsat: string;
  feePercent: number;
  providers: number;
  invoice?: string;
}

export function quoteToLine(q: JobQuote): QuoteLine {
  return {
    estimatedMsat: q.estimatedMsat.toString(),
    lockedMsat: q.lockedMsat.toString(),
    feePercent: q.feePercent,
    providers: q.providers,
    ...(q.invoice ? { invoice: q.invoice } : {}),
  };
}

export function quoteFromLine(line: QuoteLine): JobQuote {
  return {
    estimatedMsat: BigInt(line.estimatedMsat),
    lockedMsat: BigInt(line.lockedMsat),
    feePercent: line.feePercent,
    providers: line.providers,
    ...(line.invoice ? { invoice: line.invoice } : {}),
  };
}

export const JobIdSchema = z
  .string()
  .min(1)
  .max(MAX_JOB_ID_CHARS)
  .regex(/^[A-Za-z0-9._:-]+$/, "letters, digits, '.', '_', ':' and '-'");

/** One line of the events stream; shard states travel as base64. */
export type JobStreamLine =
  | { type: "progress"; job: Extract<JobEvent, { type: "progress" }>["job"]; shards: string }
  | Extract<JobEvent, { type: "finished" }>
  | { type: "reconnecting"; reason: string }
  | { type: "heartbeat" }
  | { type: "error"; name: string; message: string; hint?: string };

export function eventToLine(event: JobEvent): JobStreamLine {
  return event.type === "progress"
    ? { type: "progress", job: event.job, shards: Buffer.from(event.shards).toString("base64") }
    : event;
}

export function eventFromLine(line: Extract<JobStreamLine, { type: "progress" | "finished" }>): JobEvent {
  return line.type === "progress"
    ? { type: "progress", job: line.job, shards: new Uint8Array(Buffer.from(line.shards, "base64")) }
    : line;
}

/** `?aggregator=PEER&addr=...` for an aggregator. */
export function aggregatorQuery(aggregator: { peerId: string; addrs: string[] }, extra: Record<string, string> = {}) {
  const query = new URLSearchParams({ aggregator: aggregator.peerId, ...extra });
  for (const a of aggregator.addrs) query.append("addr", a);
  return query.toString();
}
