import { JOB_COLUMNS, type JobRow, toJob } from "../jobs/rows.ts";
import type { Store } from "../store/db.ts";

/**
 * The jobs an aggregator running on this INFERNET_HOME holds, read straight from its SQLite file
 * (WAL lets this process read while the node writes), newest first.
 */

/** Most held jobs listed. */
export const MAX_HELD_JOBS = 100;

export interface HeldJob {
  id: string;
  model: string;
  state: string;
  verified: number;
  shards: number;
  /** The peer that submitted it ("" when the aggregator did not record one). */
  client: string;
  createdAt: number;
  error: string | undefined;
}

export function heldJobs(store: Store, limit = MAX_HELD_JOBS): HeldJob[] {
  const columns = JOB_COLUMNS.split(", ")
    .map((c) => `j.${c}`)
    .join(", ");
  return store.db
    .query<JobRow & { client_peer: string | null }, [number]>(
      `SELECT ${columns}, a.client_peer FROM jobs j LEFT JOIN aggregator_jobs a ON a.job_id = j.id
       ORDER BY j.created_at DESC, j.rowid DESC LIMIT ?`,
    )
    .all(limit)
    .map((row) => {
      const job = toJob(row);
      return {
        id: job.id,
        model: job.spec.model.name,
        state: job.state,
        verified: job.shardsVerified,
        shards: job.shardCount,
        client: row.client_peer ?? "",
        createdAt: job.createdAt,
        error: job.error,
      };
    });
}
