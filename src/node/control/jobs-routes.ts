import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { JobNotFoundError } from "../../jobs/errors.ts";
import type { Shard } from "../../jobs/records.ts";
import { shardFromWire } from "../../jobs/shard-codec.ts";
import { errorMessage, InfernetError, InvalidInputError, UsageError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import type { InfernetNode } from "../node.ts";
import { decode } from "../wire.ts";
import { nodeJobOps } from "./jobs-node.ts";
import type { AggregatorRef } from "./jobs-ops.ts";
import {
  AGGREGATORS_PATH,
  AggregatorRefSchema,
  eventToLine,
  JOBS_PATH,
  JobIdSchema,
  type JobStreamLine,
  JobUploadLineSchema,
  MAX_QUOTE_BODY_BYTES,
  MAX_UPLOAD_LINE_CHARS,
  OUTPUT_HEADERS,
  QUOTE_PATH,
  quoteToLine,
} from "./jobs-protocol.ts";
import { errorLine, ndjsonLines, ndjsonResponse } from "./ndjson.ts";

/**
 * The daemon's side of the batch-job endpoints (see jobs-protocol.ts): each one is `nodeJobOps` on
 * the running node, so a command reaches aggregators through the node's identity and connections.
 */
const log = logger("node:control:jobs");

/** Where the daemon keeps outputs it fetched for a client, under INFERNET_HOME (resumable). */
export const OUTPUT_CACHE_DIR = "job-outputs";

/** The response for a jobs endpoint, or undefined when `url` is not one. */
export async function routeJobs(
  node: InfernetNode,
  home: string,
  req: Request,
  url: URL,
): Promise<Response | undefined> {
  try {
    if (req.method === "GET" && url.pathname === AGGREGATORS_PATH) {
      return Response.json(await nodeJobOps(node).findAggregators(req.signal));
    }
    if (req.method === "POST" && url.pathname === JOBS_PATH) return await upload(node, req);
    if (req.method === "POST" && url.pathname === QUOTE_PATH) return await quote(node, req);
    const match = /^\/v1\/jobs\/([^/]+)\/(events|output|report)$/.exec(url.pathname);
    if (!match || req.method !== "GET") return undefined;
    const parsed = JobIdSchema.safeParse(decodeURIComponent(match[1] as string));
    if (!parsed.success) throw new UsageError(`bad job id: ${parsed.error.issues[0]?.message}`);
    const jobId = parsed.data;
    const aggregator = aggregatorOf(url);
    if (match[2] === "report") return Response.json(await nodeJobOps(node).report(aggregator, jobId, req.signal));
    if (match[2] === "output") return await output(node, home, aggregator, jobId, url, req.signal);
    return events(node, aggregator, jobId, req);
  } catch (err) {
    return errorResponse(err);
  }
}

function aggregatorOf(url: URL): AggregatorRef {
  const parsed = AggregatorRefSchema.safeParse({
    peerId: url.searchParams.get("aggregator") ?? "",
    addrs: url.searchParams.getAll("addr"),
  });
  if (!parsed.success) throw new UsageError(`bad aggregator: ${parsed.error.issues[0]?.message ?? "missing"}`);
  return parsed.data;
}

/** A job's header line (an upload's first line, a quote request), checked; a UsageError naming `what`. */
function headerLine(text: string, what: string) {
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (cause) {
    throw new UsageError(`the ${what} is not JSON: ${errorMessage(cause)}`);
  }
  const parsed = JobUploadLineSchema.safeParse(header);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UsageError(`bad ${what}: ${issue?.path.join(".")}: ${issue?.message ?? "malformed"}`);
  }
  return parsed.data;
}

async function upload(node: InfernetNode, req: Request): Promise<Response> {
  if (!req.body) throw new UsageError("an upload needs a body");
  const lines = ndjsonLines(
    req.body,
    MAX_UPLOAD_LINE_CHARS,
    () => new InvalidInputError(`an upload line is over ${MAX_UPLOAD_LINE_CHARS} characters`),
  );
  const first = await lines.next();
  if (first.done) throw new UsageError("an upload starts with its header line");
  const { aggregator, ...header } = headerLine(first.value, "upload header");
  async function* shards(): AsyncGenerator<Shard> {
    for await (const line of lines) {
      if (line.trim() === "") continue;
      yield shardFromWire(decode(Buffer.from(line, "base64")));
    }
  }
  const result = await nodeJobOps(node).submit(aggregator, header, shards(), { signal: req.signal });
  return Response.json(result);
}

async function quote(node: InfernetNode, req: Request): Promise<Response> {
  const text = await req.text();
  if (text.length > MAX_QUOTE_BODY_BYTES)
    throw new InvalidInputError(`a quote request is over ${MAX_QUOTE_BODY_BYTES} bytes`);
  const { aggregator, ...header } = headerLine(text, "quote request");
  return Response.json(quoteToLine(await nodeJobOps(node).quote(aggregator, header, req.signal)));
}

async function output(
  node: InfernetNode,
  home: string,
  aggregator: AggregatorRef,
  jobId: string,
  url: URL,
  signal: AbortSignal,
): Promise<Response> {
  const offset = Number(url.searchParams.get("offset") ?? "0");
  if (!Number.isSafeInteger(offset) || offset < 0) throw new UsageError("offset must be a whole number of bytes");
  let path: string;
  let info: { bytes: number; sha256: string; records: number };
  if (aggregator.peerId === node.peerId && node.aggregator) {
    const out = await node.aggregator.output(jobId, node.peerId);
    path = out.path;
    info = out;
  } else {
    // Fetched once into the home (resumed there if a fetch was cut), then served from it.
    const dir = join(home, OUTPUT_CACHE_DIR);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    path = join(dir, `${aggregator.peerId}-${jobId}.jsonl`);
    info = await nodeJobOps(node).fetchOutput(aggregator, jobId, path, { signal });
  }
  if (offset > info.bytes) throw new InvalidInputError(`offset ${offset} is past the output's ${info.bytes} bytes`);
  return new Response(Bun.file(path).slice(offset, info.bytes), {
    headers: {
      "content-type": "application/x-ndjson",
      [OUTPUT_HEADERS.bytes]: String(info.bytes),
      [OUTPUT_HEADERS.sha256]: info.sha256,
      [OUTPUT_HEADERS.records]: String(info.records),
    },
  });
}

function events(node: InfernetNode, aggregator: AggregatorRef, jobId: string, req: Request): Response {
  return ndjsonResponse<JobStreamLine>(req.signal, async (send) => {
    await nodeJobOps(node).follow(aggregator, jobId, {
      signal: req.signal,
      onEvent: (event) => send(eventToLine(event)),
      onReconnect: (reason) => send({ type: "reconnecting", reason }),
    });
  });
}

function errorResponse(err: unknown): Response {
  const status =
    err instanceof JobNotFoundError
      ? 404
      : err instanceof UsageError || err instanceof InvalidInputError
        ? 400
        : err instanceof InfernetError
          ? 422
          : 500;
  if (status === 500) log.warn("job request failed", { err: errorMessage(err) });
  return Response.json(errorLine(err), { status });
}
