import { statSync } from "node:fs";
import type { Store } from "../store/db.ts";

/**
 * The `model_files` table: files whose sha256 we have checked. A row is trusted only while the
 * file's size and mtime are what they were when it was hashed, so a model is hashed once, not on
 * every run, and a file changed behind our back is hashed again.
 */
export interface VerifiedFile {
  path: string;
  model: string;
  sha256: string;
  size: number;
  mtimeMs: number;
  verifiedAt: number;
}

interface Row {
  path: string;
  model: string;
  sha256: string;
  size: number;
  mtime_ms: number;
  verified_at: number;
}

/** Stat of a file as the table records it (mtime truncated to whole milliseconds), or undefined if absent. */
export function fileStamp(path: string): { size: number; mtimeMs: number } | undefined {
  try {
    const st = statSync(path);
    if (!st.isFile()) return undefined;
    return { size: st.size, mtimeMs: Math.trunc(st.mtimeMs) };
  } catch {
    return undefined;
  }
}

/** The verified record of `path`, if there is one and the file is unchanged since. */
export function verifiedRecord(store: Store, path: string): VerifiedFile | undefined {
  const row = store.db
    .query<Row, [string]>("SELECT path, model, sha256, size, mtime_ms, verified_at FROM model_files WHERE path = ?")
    .get(path);
  if (!row) return undefined;
  const stamp = fileStamp(path);
  if (!stamp || stamp.size !== row.size || stamp.mtimeMs !== row.mtime_ms) return undefined;
  return {
    path: row.path,
    model: row.model,
    sha256: row.sha256,
    size: row.size,
    mtimeMs: row.mtime_ms,
    verifiedAt: row.verified_at,
  };
}

/** Records that `path` (as it is now on disk) has the given sha256. */
export function recordVerified(store: Store, path: string, model: string, sha256: string): void {
  const stamp = fileStamp(path);
  if (!stamp) return;
  store.db
    .query(
      `INSERT INTO model_files (path, model, sha256, size, mtime_ms, verified_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(path) DO UPDATE SET model = excluded.model, sha256 = excluded.sha256, size = excluded.size,
         mtime_ms = excluded.mtime_ms, verified_at = excluded.verified_at`,
    )
    .run(path, model, sha256, stamp.size, stamp.mtimeMs, Date.now());
}

export function forgetVerified(store: Store, path: string): void {
  store.db.query("DELETE FROM model_files WHERE path = ?").run(path);
}
