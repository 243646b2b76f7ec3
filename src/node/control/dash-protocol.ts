import { z } from "zod";
import { JOB_STATES } from "../../jobs/states.ts";
import type { DashboardSnapshot } from "../../tui/state.ts";

/**
 * The dashboard's part of the control API: `GET /v1/dashboard` answers one `DashboardSnapshot`
 * (tui/state.ts), `POST /v1/serving {accepting}` pauses or resumes serving. The client checks the
 * snapshot against this schema, so a node of another version shows an error, not a garbled screen.
 */
/** An amount as a decimal string of msat (bigint-safe over JSON). */
const msatText = z.string().regex(/^\d{1,19}$/);

export const DASHBOARD_PATH = "/v1/dashboard";
export const SERVING_PATH = "/v1/serving";

/** Jobs shown, newest first: the panel lists recent work, not history. */
export const MAX_DASH_JOBS = 50;
/** Requests and shards shown (running ones, then the newest finished). */
export const MAX_DASH_WORK = 50;
/** Peers shown: more than a terminal holds, few enough to keep the snapshot small. */
export const MAX_DASH_PEERS = 256;
/** Log lines shown, the newest. */
export const LOG_TAIL_LINES = 200;
/** The log tail is read from at most this many bytes at the end of the file. */
export const MAX_LOG_TAIL_BYTES = 128 * 1024;
/** A log message longer than this is cut (a stack trace does not belong on one screen line). */
export const MAX_LOG_MSG_CHARS = 500;
/** Largest snapshot the client reads (a full one with every bound reached is ~300 KiB). */
export const MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024;
/** Largest `POST /v1/serving` body read. */
export const MAX_SERVING_BODY_BYTES = 1024;

export const ServingBodySchema = z.object({ accepting: z.boolean() }).strict();
export type ServingBody = z.infer<typeof ServingBodySchema>;

const text = z.string().max(4096);
const optionalNumber = z.number().optional();
const count = z.number().int().nonnegative();

export const DashboardSnapshotSchema = z.object({
  node: z.object({
    peerId: text,
    version: text,
    modes: z.array(z.enum(["provider", "client", "aggregator"])).max(3),
    startedAt: z.number(),
    addresses: z.array(text).max(256),
    reachability: z.enum(["public", "private", "unknown"]),
    connections: count,
  }),
  hardware: z.object({
    gpus: z
      .array(
        z.object({
          name: text,
          vramUsedBytes: optionalNumber,
          vramTotalBytes: optionalNumber,
          utilizationPercent: optionalNumber,
          temperatureC: optionalNumber,
        }),
      )
      .max(64),
    cpu: z.object({ model: text, cores: count, usedPercent: optionalNumber }),
    memory: z.object({ usedBytes: z.number(), totalBytes: z.number() }),
    engine: text.optional(),
  }),
  serving: z.object({
    accepting: z.boolean(),
    models: z.array(z.object({ name: text, sha256: text, runtime: text })).max(256),
    active: count,
    queued: count,
    served: count,
    failed: count,
    ratePerSecond: optionalNumber,
    work: z
      .array(
        z.object({
          id: count,
          kind: z.enum(["request", "shard"]),
          model: text,
          peer: text,
          unit: z.enum(["tokens", "records"]),
          done: count,
          total: count.optional(),
          startedAt: z.number(),
          endedAt: optionalNumber,
          outcome: z.enum(["running", "done", "failed"]),
          error: text.optional(),
        }),
      )
      .max(MAX_DASH_WORK),
  }),
  jobs: z
    .array(
      z.object({
        id: text,
        model: text,
        state: z.enum(JOB_STATES),
        shardCount: count,
        shardsVerified: count,
        retries: count,
        createdAt: z.number(),
        finishedAt: optionalNumber,
        error: text.optional(),
      }),
    )
    .max(MAX_DASH_JOBS),
  peers: z
    .array(
      z.object({
        peerId: text,
        models: z.array(text).max(256),
        price: optionalNumber,
        latencyMs: optionalNumber,
        completed: count,
        failed: count,
        connected: z.boolean(),
        aggregatorFeePercent: optionalNumber,
      }),
    )
    .max(MAX_DASH_PEERS),
  earnings: z.object({
    incomeMsat: msatText,
    feesMsat: msatText,
    escrowMsat: msatText,
    owedMsat: msatText,
    paying: count,
    paid: count,
  }),
  log: z
    .array(z.object({ t: text, level: text, ns: text, msg: z.string().max(MAX_LOG_MSG_CHARS) }))
    .max(LOG_TAIL_LINES),
  takenAt: z.number(),
});

/**
 * JSON drops undefined fields, so the parsed object has them absent rather than undefined; the
 * panels read both the same way. This keeps the schema and the type in step at compile time.
 */
export type ParsedSnapshot = z.infer<typeof DashboardSnapshotSchema>;
const _sameShape: (s: DashboardSnapshot) => ParsedSnapshot = (s) => s;
void _sameShape;
