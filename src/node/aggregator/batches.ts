import type { Shard } from "../../jobs/records.ts";
import type { AssignmentRecord } from "../../jobs/rows.ts";
import type { ShardEvent } from "../protocols/shard/index.ts";
import type { BatchEvent } from "./network.ts";

/** Tiny shards share a stream: the per-stream cost (dial, open, framing) is paid once for many. */

/** Shards expected to take less than this go to their provider in batches (one stream for several). */
export const BATCH_SHARD_MS = 100;
/** A batch holds at most this many shards... */
export const MAX_BATCH_SHARDS = 16;
/** ...and about this much expected work. */
export const BATCH_TARGET_MS = 250;

/**
 * Copies leased in one tick, grouped for dispatch: a shard expected to take `BATCH_SHARD_MS` or more
 * goes alone; tiny ones for the same provider and job share a stream, up to `MAX_BATCH_SHARDS` and
 * about `BATCH_TARGET_MS` of work, so the per-stream cost is paid once for many.
 */
export function batches(leased: readonly { a: AssignmentRecord; expectedMs: number }[]): AssignmentRecord[][] {
  const out: AssignmentRecord[][] = [];
  const open = new Map<string, { group: AssignmentRecord[]; ms: number }>();
  for (const { a, expectedMs } of leased) {
    if (expectedMs >= BATCH_SHARD_MS) {
      out.push([a]);
      continue;
    }
    const key = `${a.jobId} ${a.provider}`;
    const batch = open.get(key) ?? { group: [], ms: 0 };
    batch.group.push(a);
    batch.ms += expectedMs;
    open.set(key, batch);
    if (batch.group.length >= MAX_BATCH_SHARDS || batch.ms >= BATCH_TARGET_MS) {
      out.push(batch.group);
      open.delete(key);
    }
  }
  for (const { group } of open.values()) out.push(group);
  return out;
}

/** A single-shard call's events, named by the shard's index as a batch's are. */
export async function* single(events: AsyncIterable<ShardEvent>, shard: Shard): AsyncGenerator<BatchEvent> {
  for await (const event of events) yield { ...event, shard: shard.index };
}
