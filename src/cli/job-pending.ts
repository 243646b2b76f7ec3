import { mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { type JobSpec, JobSpecSchema } from "../jobs/spec.ts";
import type { AggregatorRef } from "../node/control/jobs-ops.ts";
import { AggregatorRefSchema } from "../node/control/jobs-protocol.ts";

/**
 * The spec of a submission whose upload has started but whose job id is not recorded yet. An
 * aggregator refuses an idempotency key that comes back with a different spec, and a spec holds an
 * absolute deadline: a submit re-run after a crash mid-upload must send the very same spec to be
 * handed the job the first run created, and to the same aggregator. So both are written here before
 * the upload and removed once the job is in `submitted_jobs`.
 */

const PendingSchema = z.object({ spec: JobSpecSchema, aggregator: AggregatorRefSchema });
export interface Pending {
  spec: JobSpec;
  aggregator: AggregatorRef;
}

/** Folder under INFERNET_HOME. */
export const PENDING_DIR = "pending-submits";

function pathOf(home: string, key: string): string {
  const name = new Bun.CryptoHasher("sha256").update(key).digest("hex");
  return join(home, PENDING_DIR, `${name}.json`);
}

/** What an earlier run sent with this key, when its deadline has not passed. */
export async function pendingSubmit(home: string, key: string, now = Date.now()): Promise<Pending | undefined> {
  const file = Bun.file(pathOf(home, key));
  if (!(await file.exists())) return undefined;
  try {
    const parsed = PendingSchema.safeParse(await file.json());
    if (parsed.success && parsed.data.spec.idempotencyKey === key && parsed.data.spec.deadlineMs > now) {
      return parsed.data;
    }
  } catch {
    // A torn write from a crash: there is nothing to reuse.
  }
  return undefined;
}

export async function savePendingSubmit(home: string, pending: Pending): Promise<void> {
  const path = pathOf(home, pending.spec.idempotencyKey);
  await mkdir(join(home, PENDING_DIR), { recursive: true, mode: 0o700 });
  await Bun.write(`${path}.tmp`, JSON.stringify(pending));
  await rename(`${path}.tmp`, path);
}

export async function clearPendingSubmit(home: string, key: string): Promise<void> {
  await rm(pathOf(home, key), { force: true });
}
