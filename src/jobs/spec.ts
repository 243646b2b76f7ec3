import { z } from "zod";
import { InvalidInputError } from "../util/errors.ts";
import { MAX_SHARDS, type ShardPlan } from "./records.ts";

/** Copies of each shard computed by different providers unless the spec says otherwise (verification). */
export const DEFAULT_REDUNDANCY = 2;
/** More copies than this buys nothing but cost. */
export const MAX_REDUNDANCY = 8;
/** Largest job spec (JSON) accepted from a file or a peer. */
export const MAX_SPEC_BYTES = 64 * 1024;
/** Longest idempotency key a client may choose. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 128;

const SHA256 = z.string().regex(/^[0-9a-f]{64}$/, "a lowercase hex sha256");

/** Where a job's inputs come from; the splitter turns it into records. */
export const InputRefSchema = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("prompts"), path: z.string().min(1) }),
  z.object({ kind: z.literal("tensor"), path: z.string().min(1) }),
  z.object({ kind: z.literal("idx"), path: z.string().min(1) }),
  z.object({ kind: z.literal("images"), paths: z.array(z.string().min(1)).min(1) }),
]);
export type InputRef = z.infer<typeof InputRefSchema>;

/**
 * What a client asks for: one model over many input records, split into shards by size or count.
 * `idempotencyKey` makes a retried submission return the job it already created.
 */
export const JobSpecSchema = z
  .object({
    model: z.object({ name: z.string().min(1), sha256: SHA256 }),
    input: InputRefSchema,
    /** Records per shard; at most one of shardSize and shardCount (neither: the splitter's default). */
    shardSize: z.number().int().positive().optional(),
    /** Number of shards; at most one of shardSize and shardCount. */
    shardCount: z.number().int().positive().max(MAX_SHARDS).optional(),
    redundancy: z.number().int().min(1).max(MAX_REDUNDANCY).default(DEFAULT_REDUNDANCY),
    /**
     * The fewest copies any shard gets, however trusted its provider (adaptive replication lowers
     * copies from `redundancy` towards this floor; canaries ride along every copy). Default 1.
     */
    minVerification: z.number().int().min(1).max(MAX_REDUNDANCY).optional(),
    /** Most the client pays for the whole job, in millisatoshi. */
    maxPriceMsat: z.number().int().nonnegative(),
    /** Unix time (ms) after which the result is useless to the client. */
    deadlineMs: z.number().int().positive(),
    /** Peer id of the aggregator the client would like to use. */
    preferredAggregator: z.string().min(1).optional(),
    idempotencyKey: z.string().min(1).max(MAX_IDEMPOTENCY_KEY_LENGTH),
    /** Engine options passed through to every shard (max tokens, temperature). */
    params: z.record(z.string(), z.unknown()).optional(),
  })
  .strict()
  .refine((s) => (s.minVerification ?? 1) <= s.redundancy, {
    message: "minVerification cannot exceed redundancy",
    path: ["minVerification"],
  })
  .refine((s) => s.shardSize === undefined || s.shardCount === undefined, {
    message: "give shardSize or shardCount, not both",
  });
export type JobSpec = z.output<typeof JobSpecSchema>;
/** A spec as written by a client: redundancy may be left out. */
export type JobSpecInput = z.input<typeof JobSpecSchema>;

/** Validates an untrusted spec (file, peer message); throws `InvalidInputError` naming the first bad field. */
export function parseJobSpec(value: unknown): JobSpec {
  const parsed = JobSpecSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
    throw new InvalidInputError(`invalid job spec: ${where}${issue?.message ?? "malformed"}`, {
      hint: "see `infernet submit --help` for the job file format",
    });
  }
  return parsed.data;
}

/** Parses a job spec from JSON text, refusing anything over `MAX_SPEC_BYTES`. */
export function parseJobSpecJson(text: string): JobSpec {
  if (Buffer.byteLength(text) > MAX_SPEC_BYTES) {
    throw new InvalidInputError(`job spec is larger than ${MAX_SPEC_BYTES} bytes`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new InvalidInputError("job spec is not valid JSON", { cause });
  }
  return parseJobSpec(value);
}

/** One shard's records: `count` records from global record index `start` (as in `Shard`). */
export interface ShardRange {
  start: number;
  count: number;
}

/** The ranges of a splitter's plan: shard `i` holds `[i * shardSize, min(records, (i + 1) * shardSize))`. */
export function shardRanges(plan: ShardPlan): ShardRange[] {
  return Array.from({ length: plan.shardCount }, (_, i) => {
    const start = i * plan.shardSize;
    return { start, count: Math.min(plan.records, start + plan.shardSize) - start };
  });
}

/** Refuses an empty list, too many shards or a record range that is not a natural number. */
export function checkShardRanges(shards: readonly ShardRange[]): void {
  if (shards.length === 0) throw new InvalidInputError("a job needs at least one shard");
  if (shards.length > MAX_SHARDS) throw new InvalidInputError(`a job may have at most ${MAX_SHARDS} shards`);
  for (const [i, s] of shards.entries()) {
    if (!Number.isSafeInteger(s.start) || s.start < 0 || !Number.isSafeInteger(s.count) || s.count < 1) {
      throw new InvalidInputError(`shard ${i} has an invalid record range`);
    }
  }
}
