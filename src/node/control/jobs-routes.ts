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
  MAX_UPLOAD_LINE_CHARS,
  OUTPUT_HEADERS,
} from "./jobs-protocol.ts";
import { CONTROL_HEARTBEAT_MS } from "./protocol.ts";

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

async function upload(node: InfernetNode, req: Request): Promise<Response> {
  if (!req.body) throw new UsageError("an upload needs a body");
  const lines = ndjsonLines(req.body, MAX_UPLOAD_LINE_CHARS);
  const first = await lines.next();
  if (first.done) throw new UsageError("an upload starts with its header line");
  let header: unknown;
  try {
    header = JSON.parse(first.value);
  } catch (cause) {
    throw new UsageError(`the upload header is not JSON: ${errorMessage(cause)}`);
  }
  const parsed = JobUploadLineSchema.safeParse(header);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new UsageError(`bad upload header: ${issue?.path.join(".")}: ${issue?.message ?? "malformed"}`);
  }
  const { aggregator, spec, plan, kind } = parsed.data;
  async function* shards(): AsyncGenerator<Shard> {
    for await (const line of lines) {
      if (line.trim() === "") continue;
      yield shardFromWire(decode(Buffer.from(line, "base64")));
    }
  }
  const result = await nodeJobOps(node).submit(aggregator, { spec, plan, kind }, shards(), { signal: req.signal });
  return Response.json(result);
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
  const encoder = new TextEncoder();
  let quietSince = Date.now();
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      const send = (line: JobStreamLine) => {
        quietSince = Date.now();
        try {
          controller.enqueue(encoder.encode(`${JSON.stringify(line)}\n`));
        } catch {
          // The client is gone; its request signal stops the follow.
        }
      };
      // Bun drops a connection idle for 10 s: a job can be quiet for longer.
      heartbeat = setInterval(() => {
        if (Date.now() - quietSince >= CONTROL_HEARTBEAT_MS) send({ type: "heartbeat" });
      }, CONTROL_HEARTBEAT_MS);
      try {
        await nodeJobOps(node).follow(aggregator, jobId, {
          signal: req.signal,
          onEvent: (event) => send(eventToLine(event)),
          onReconnect: (reason) => send({ type: "reconnecting", reason }),
        });
      } catch (err) {
        if (!req.signal.aborted) send(errorLine(err));
      } finally {
        clearInterval(heartbeat);
      }
      try {
        controller.close();
      } catch {
        // already cancelled by the client
      }
    },
    cancel() {
      clearInterval(heartbeat);
    },
  });
  return new Response(stream, { headers: { "content-type": "application/x-ndjson" } });
}

function errorLine(err: unknown): Extract<JobStreamLine, { type: "error" }> {
  return {
    type: "error",
    name: err instanceof Error ? err.name : "Error",
    message: errorMessage(err),
    ...(err instanceof InfernetError && err.hint ? { hint: err.hint } : {}),
  };
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

/** The lines of an NDJSON body, refusing any longer than `maxChars`. */
async function* ndjsonLines(body: ReadableStream<Uint8Array>, maxChars: number): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    let newline = buffered.indexOf("\n");
    while (newline >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      newline = buffered.indexOf("\n");
    }
    if (buffered.length > maxChars) throw new InvalidInputError(`an upload line is over ${maxChars} characters`);
  }
  buffered += decoder.decode();
  if (buffered.trim() !== "") yield buffered;
}
