import { mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { createMerger } from "../../jobs/merge.ts";
import { catalog, modelFile } from "../../models/catalog.ts";
import { sha256File } from "../../models/hash.ts";
import type { OutputInfo } from "./api.ts";
import { resultFromBytes } from "./results.ts";
import type { AggregatorStore } from "./store.ts";

/**
 * Writes a verified job's output: every shard's accepted result, in input order, through the merger
 * (jobs/merge.ts) into `<home>/jobs/<id>/output.jsonl`, with each record's providers (the copies
 * that agreed). It reads only what the store holds, so running it again after a crash writes the
 * same file; the merger writes to a `.partial` file and renames it, so a reader never sees half.
 */

export function jobDir(home: string, jobId: string): string {
  return join(home, "jobs", jobId);
}

export async function mergeJob(store: AggregatorStore, home: string, jobId: string): Promise<OutputInfo> {
  const job = store.jobs.job(jobId);
  const meta = store.meta(jobId);
  const dir = jobDir(home, jobId);
  await mkdir(dir, { recursive: true });
  const path = join(dir, "output.jsonl");
  const vision = catalog().find((e) => modelFile(e).sha256 === job.spec.model.sha256)?.vision;
  const plan = { records: meta.records, shardSize: meta.shardSize, shardCount: job.shardCount };
  const merger = await createMerger({
    plan,
    kind: meta.kind === "prompts" ? "text" : "classification",
    outputPath: path,
    ...(vision ? { outputKind: vision.outputKind, ...(vision.labels ? { classNames: vision.labels } : {}) } : {}),
  });
  try {
    // Every verified copy in shard order, in one query; a shard's first copy carries the result bytes.
    const rows = store.verifiedCopies(jobId);
    for (let i = 0; i < rows.length; ) {
      const shard = rows[i]?.shard as number;
      const providers: string[] = [];
      let bytes: Uint8Array | undefined;
      for (; i < rows.length && rows[i]?.shard === shard; i++) {
        const row = rows[i] as (typeof rows)[number];
        providers.push(row.provider);
        bytes ??= row.bytes ?? undefined;
      }
      if (!bytes) throw new Error(`shard ${shard} has no verified result`);
      await merger.add(resultFromBytes(bytes, providers));
    }
    await merger.finish();
  } finally {
    await merger.close();
  }
  const output: OutputInfo = {
    path,
    bytes: (await stat(path)).size,
    sha256: await sha256File(path),
    records: meta.records,
  };
  store.setOutput(jobId, output);
  return output;
}
