import { decode, encode } from "../../node/wire.ts";
import type { Store } from "../../store/db.ts";
import type { Shard, ShardPayload, ShardResult } from "../records.ts";
import { resultFromWire, resultToWire, shardFromWire, shardToWire } from "../shard-codec.ts";
import { compareResults, DEFAULT_TOLERANCE, type Tolerance } from "./compare.ts";
import { mixShard, payloadCount, pickResult, resultCount } from "./records.ts";

/**
 * Canaries: records whose answer the aggregator already knows, mixed into the shards it sends. A
 * provider sees one shard of records of the same kind, encoded the same way, and cannot tell which
 * are canaries (they are records of the same model and shape, at random positions, and every copy
 * carries them, so their count says nothing either). A wrong canary proves the copy wrong whatever
 * any other copy says, which is what catches providers that collude on the same wrong answer.
 *
 * The pool holds known answers per model and record shape, from the aggregator's own computation
 * (`source: "self"`) or from shards that several providers with a long verified history agreed on
 * (`"agreement"`); it rotates: the least used are drawn first and the pool is trimmed to
 * `MAX_POOL_PER_MODEL`, oldest-used out.
 */

/** Canaries per shard: this fraction of its records... */
export const CANARY_FRACTION = 0.01;
/** ...at least this many (when the pool has them)... */
export const MIN_CANARIES = 1;
/** ...and at most this many. */
export const MAX_CANARIES = 8;
/** Known answers kept per model and record shape. */
export const MAX_POOL_PER_MODEL = 256;

export interface Canary {
  id: number;
  /** One record, as a payload of one. */
  record: ShardPayload;
  /** Its answer, as a result of one record. */
  answer: ShardResult;
}

/** Which canaries a copy carries and where (positions in the shard as sent). */
export interface Mix {
  positions: number[];
  canaries: Canary[];
}

export interface CanaryCheck {
  /** The result with the canaries taken out: what the shard's own records got. */
  result: ShardResult;
  right: number;
  /** Canaries answered wrong: the position sent, the known answer and what came back. */
  wrong: { canary: Canary; position: number; got: ShardResult }[];
  /** Text canaries that differ from the known text: for re-scoring, not yet proof (see text.ts). */
  unsure: { canary: Canary; position: number; got: ShardResult }[];
}

/**
 * The shape a canary must share with a shard's records to pass for one of them: the record kind
 * and, for tensors and images, their size; for prompts, the generation settings (a canary with
 * another token budget would stand out).
 */
export function recordShape(payload: ShardPayload): string {
  if (payload.kind === "tensor") return `tensor:${payload.tensor.type}:${payload.tensor.dims.slice(1).join("x")}`;
  if (payload.kind === "images") {
    const first = payload.images[0];
    return first ? `images:${first.width}x${first.height}x${first.channels}` : "images";
  }
  const first = payload.prompts[0];
  if (!first) return "prompts";
  const { prompt: _text, ...settings } = first;
  return `prompts:${JSON.stringify(settings, Object.keys(settings).sort())}`;
}

/** How many canaries a shard of `records` records carries. */
export function canaryCount(records: number): number {
  return Math.max(MIN_CANARIES, Math.min(MAX_CANARIES, Math.round(records * CANARY_FRACTION)));
}

export class CanaryPool {
  private readonly db: Store["db"];

  constructor(
    store: Store,
    private readonly now: () => number = Date.now,
  ) {
    this.db = store.db;
  }

  /** Adds a known answer (one record and its result); an already known record is left as it is. */
  add(modelSha256: string, record: ShardPayload, answer: ShardResult, source: "self" | "agreement"): void {
    if (payloadCount(record) !== 1 || resultCount(answer) !== 1) throw new RangeError("a canary is one record");
    const shape = recordShape(record);
    this.db
      .query(
        `INSERT OR IGNORE INTO canaries (model_sha256, kind, record, answer, source, created_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(
        modelSha256,
        shape,
        encode(shardToWire({ index: 0, start: 0, count: 1, payload: record })),
        encode(resultToWire({ ...answer, shard: 0, providers: ["-"] })),
        source,
        this.now(),
      );
    // Rotation: beyond the cap, the most used go first.
    this.db
      .query(
        `DELETE FROM canaries WHERE id IN (
           SELECT id FROM canaries WHERE model_sha256 = ? AND kind = ? ORDER BY uses ASC, id DESC LIMIT -1 OFFSET ?)`,
      )
      .run(modelSha256, shape, MAX_POOL_PER_MODEL);
  }

  /** Known answers for this model and record shape. */
  size(modelSha256: string, shape: string): number {
    return (
      this.db
        .query<{ n: number }, [string, string]>(
          "SELECT count(*) AS n FROM canaries WHERE model_sha256 = ? AND kind = ?",
        )
        .get(modelSha256, shape)?.n ?? 0
    );
  }

  /** `count` canaries for this model and shape, the least used first (random among equals). */
  draw(modelSha256: string, shape: string, count: number): Canary[] {
    const rows = this.db
      .query<{ id: number; record: Uint8Array; answer: Uint8Array }, [string, string, number]>(
        "SELECT id, record, answer FROM canaries WHERE model_sha256 = ? AND kind = ? ORDER BY uses, random() LIMIT ?",
      )
      .all(modelSha256, shape, count);
    const bump = this.db.query("UPDATE canaries SET uses = uses + 1 WHERE id = ?");
    for (const r of rows) bump.run(r.id);
    return rows.map((r) => ({
      id: r.id,
      record: shardFromWire(decode(r.record)).payload,
      answer: resultFromWire(decode(r.answer)),
    }));
  }
}

/** The shard with the canaries mixed in at random positions, and where they went. */
export function mixCanaries(
  shard: Shard,
  canaries: Canary[],
  random: () => number = Math.random,
): { shard: Shard; mix: Mix } {
  if (canaries.length === 0) return { shard, mix: { positions: [], canaries: [] } };
  const total = shard.count + canaries.length;
  const positions = new Set<number>();
  while (positions.size < canaries.length) positions.add(Math.floor(random() * total));
  const sorted = [...positions].sort((a, b) => a - b);
  const extra = joinRecords(canaries.map((c) => c.record));
  return { shard: mixShard(shard, extra, sorted), mix: { positions: sorted, canaries } };
}

/** Takes the canaries out of a copy's result and checks them against their known answers. */
export function checkCanaries(result: ShardResult, mix: Mix, tolerance: Tolerance = DEFAULT_TOLERANCE): CanaryCheck {
  if (mix.canaries.length === 0) return { result, right: 0, wrong: [], unsure: [] };
  const total = resultCount(result);
  const inserted = new Set(mix.positions);
  const own = [...Array(total).keys()].filter((i) => !inserted.has(i));
  const check: CanaryCheck = { result: pickResult(result, own), right: 0, wrong: [], unsure: [] };
  for (const [k, position] of mix.positions.entries()) {
    const canary = mix.canaries[k] as Canary;
    if (position >= total) {
      check.wrong.push({ canary, position, got: pickResult(result, []) });
      continue;
    }
    const got = pickResult(result, [position]);
    const comparison = compareResults(got, { ...canary.answer, shard: got.shard }, tolerance);
    if (comparison.same) check.right++;
    else if (got.kind === "text" && comparison.records !== "all") check.unsure.push({ canary, position, got });
    else check.wrong.push({ canary, position, got });
  }
  return check;
}

/** One payload holding the given one-record payloads, in order. */
function joinRecords(records: ShardPayload[]): ShardPayload {
  let joined = records[0] as ShardPayload;
  for (const r of records.slice(1)) {
    const positions = [payloadCount(joined)];
    joined = mixShard({ index: 0, start: 0, count: payloadCount(joined), payload: joined }, r, positions).payload;
  }
  return joined;
}
