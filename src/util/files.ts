import { randomUUID } from "node:crypto";
import { renameSync, unlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/**
 * Replaces `path` with `data` atomically: written to a new temporary file beside it (created
 * exclusively, with `mode`, so nobody else's file is reused and nobody else can read it meanwhile),
 * then renamed over it. A reader sees the old file or the new one, never half of one; a crash leaves
 * at most a stray temporary file. Throws the filesystem's error (the temporary file removed).
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomUUID()}.tmp`);
  try {
    writeFileSync(temp, data, { mode, flag: "wx" });
    renameSync(temp, path);
  } catch (err) {
    try {
      unlinkSync(temp);
    } catch {
      // Never created, or already renamed.
    }
    throw err;
  }
}
