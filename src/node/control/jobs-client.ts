import { appendFile, rename, rm, stat } from "node:fs/promises";
import type { JobReport } from "../../jobs/job-report.ts";
import { payloadBytes, type Shard } from "../../jobs/records.ts";
import { shardToWire } from "../../jobs/shard-codec.ts";
import { sha256File } from "../../models/hash.ts";
import {
  AbortedError,
  errorMessage,
  IntegrityError,
  InvalidInputError,
  NodeNotRunningError,
  RuntimeError,
} from "../../util/errors.ts";
import { encode } from "../wire.ts";
import { CONTROL_TIMEOUT_MS, type ControlClient, errorFrom, rebuild } from "./client.ts";
import type { AggregatorChoice, FinishedEvent, JobOps, OutputFetched } from "./jobs-ops.ts";
import {
  AGGREGATORS_PATH,
  aggregatorQuery,
  eventFromLine,
  JOBS_PATH,
  type JobStreamLine,
  type JobUploadLine,
  OUTPUT_HEADERS,
  QUOTE_PATH,
  type QuoteLine,
  quoteFromLine,
} from "./jobs-protocol.ts";
import { ndjsonLines } from "./ndjson.ts";

/**
 * `JobOps` through a running node's control socket: the node talks to the aggregator with its own
 * identity and connections, this process only streams shards in and events, output and reports out.
 */

/** Longest events line accepted from the node (a progress line of a 100,000-shard job is ~140 kB). */
const MAX_EVENT_LINE_CHARS = 4 * 1024 ** 2;
/** Longest wait for a report or the aggregator list (a DHT walk). */
const SLOW_CALL_TIMEOUT_MS = 60_000;

export function controlJobOps(control: ControlClient, peerId: string): JobOps {
  const call = async (path: string, init: RequestInit & { signal: AbortSignal }): Promise<Response> => {
    let res: Response;
    try {
      res = await fetch(`http://infernet${path}`, { unix: control.path, ...init } as RequestInit);
    } catch (cause) {
      if (init.signal.aborted) throw new AbortedError("interrupted");
      throw new NodeNotRunningError(`the node stopped answering: ${errorMessage(cause)}`, { cause });
    }
    if (!res.ok) throw await errorFrom(res);
    return res;
  };
  const timed = (signal: AbortSignal, ms: number) => AbortSignal.any([signal, AbortSignal.timeout(ms)]);

  return {
    peerId,

    async findAggregators(signal) {
      const res = await call(AGGREGATORS_PATH, { signal: timed(signal, SLOW_CALL_TIMEOUT_MS) });
      return (await res.json()) as AggregatorChoice[];
    },

    async quote(aggregator, header, signal) {
      const line: JobUploadLine = { aggregator, ...header };
      const res = await call(QUOTE_PATH, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(line),
        signal: timed(signal, SLOW_CALL_TIMEOUT_MS),
      });
      return quoteFromLine((await res.json()) as QuoteLine);
    },

    async submit(aggregator, header, shards, options) {
      const first: JobUploadLine = { aggregator, ...header };
      const encoder = new TextEncoder();
      const iterator = shards[Symbol.asyncIterator]();
      let sent = 0;
      let bytes = 0;
      let headerSent = false;
      // Pulled as the socket drains, so a large input is never held whole here.
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (!headerSent) {
            headerSent = true;
            controller.enqueue(encoder.encode(`${JSON.stringify(first)}\n`));
            return;
          }
          const next = await iterator.next();
          if (next.done) {
            controller.close();
            return;
          }
          const shard: Shard = next.value;
          controller.enqueue(encoder.encode(`${Buffer.from(encode(shardToWire(shard))).toString("base64")}\n`));
          sent++;
          bytes += payloadBytes(shard.payload);
          options.onUploaded?.(sent, bytes);
        },
        async cancel() {
          await iterator.return?.();
        },
      });
      const res = await call(JOBS_PATH, {
        method: "POST",
        headers: { "content-type": "application/x-ndjson" },
        body,
        signal: options.signal,
      });
      return (await res.json()) as { jobId: string; created: boolean };
    },

    async follow(aggregator, jobId, options): Promise<FinishedEvent> {
      const res = await call(`${JOBS_PATH}/${encodeURIComponent(jobId)}/events?${aggregatorQuery(aggregator)}`, {
        signal: options.signal,
      });
      if (!res.body) throw new RuntimeError("the node sent no events stream");
      try {
        for await (const line of lines(res.body)) {
          if (line.type === "heartbeat") continue;
          if (line.type === "error") throw rebuild(line);
          if (line.type === "reconnecting") {
            options.onReconnect?.(line.reason);
            continue;
          }
          const event = eventFromLine(line);
          options.onEvent(event);
          if (event.type === "finished") return event;
        }
      } catch (err) {
        if (options.signal.aborted) throw new AbortedError("interrupted");
        throw err;
      }
      throw new NodeNotRunningError(`the node closed the events stream of job ${jobId} before it finished`, {
        hint: `follow it again with \`infernet job ${jobId} --wait\``,
      });
    },

    async fetchOutput(aggregator, jobId, dest, options): Promise<OutputFetched> {
      // As the job protocol does: resume `dest.partial`, rename it to `dest` once whole and checked.
      const partial = `${dest}.partial`;
      const have = await stat(partial).then(
        (s) => s.size,
        () => 0,
      );
      const query = aggregatorQuery(aggregator, { offset: String(have) });
      let res: Response;
      try {
        res = await call(`${JOBS_PATH}/${encodeURIComponent(jobId)}/output?${query}`, { signal: options.signal });
      } catch (err) {
        // A prefix longer than the output is not a prefix of it: start over once.
        if (have === 0 || !(err instanceof InvalidInputError)) throw err;
        await rm(partial, { force: true });
        return this.fetchOutput(aggregator, jobId, dest, options);
      }
      const total = Number(res.headers.get(OUTPUT_HEADERS.bytes));
      const sha256 = res.headers.get(OUTPUT_HEADERS.sha256) ?? "";
      const records = Number(res.headers.get(OUTPUT_HEADERS.records));
      let done = have;
      if (res.body) {
        for await (const chunk of res.body) {
          await appendFile(partial, chunk);
          done += chunk.byteLength;
          options.onBytes?.(done);
        }
      }
      const got = await sha256File(partial);
      if (done !== total || got !== sha256) {
        await rm(partial, { force: true });
        throw new IntegrityError(
          `the output of job ${jobId} came out ${done} bytes with sha256 ${got}, not ${sha256}`,
          {
            hint: `fetch it again with \`infernet job ${jobId} --wait\``,
          },
        );
      }
      await rename(partial, dest);
      return { bytes: total, sha256, records };
    },

    async report(aggregator, jobId, signal): Promise<JobReport> {
      const res = await call(`${JOBS_PATH}/${encodeURIComponent(jobId)}/report?${aggregatorQuery(aggregator)}`, {
        signal: timed(signal, Math.max(CONTROL_TIMEOUT_MS, SLOW_CALL_TIMEOUT_MS)),
      });
      return (await res.json()) as JobReport;
    },
  };
}

async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<JobStreamLine> {
  const oversized = () => new RuntimeError("the node sent an oversized events line");
  for await (const line of ndjsonLines(body, MAX_EVENT_LINE_CHARS, oversized)) yield JSON.parse(line) as JobStreamLine;
}
