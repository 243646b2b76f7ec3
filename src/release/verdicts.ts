import { accessSync, closeSync, constants, fstatSync, openSync, readFileSync, statSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { z } from "zod";
import { resolveHome } from "../config/env.ts";
import { errorMessage } from "../util/errors.ts";
import { writeFileAtomic } from "../util/files.ts";
import { logger } from "../util/logger.ts";

/**
 * Remembered verdicts on the native runtime's files, so that a process does not hash again what an
 * earlier one already found to match the manifest (the full release's CUDA files are ~540 MB: 1-2 s on
 * every start that loads llama.cpp). A verdict is kept per absolute path and holds everything that changes
 * when the file does: size, mtime and ctime in ns, inode and device, and the manifest's sha256 for it. Any
 * difference, or no verdict, means the file is hashed again. ctime is in the key because a process cannot
 * set it: content rewritten at the same size with the old mtime put back (`touch -d`) still moves ctime.
 *
 * The file vouches for native code, so it must be no easier to write than that code:
 * - In the release folder (beside bin/ and runtime/) when this user can write that folder: whoever can
 *   write there can replace bin/infernet itself, so the cache opens no new way in; and it is shared by
 *   every INFERNET_HOME that runs this release (each node, each test, has its own home).
 * - Otherwise (a system-wide install this user cannot write) in INFERNET_HOME, which is this user's own.
 * - Never in a shared folder such as /tmp. Whatever the place, a file is trusted only if it is a regular
 *   file (not a link), owned by this user, with no permission bits for group or others, within the size
 *   limit and of this exact format; anything else is ignored (every file is hashed) and replaced on save.
 * It is written to a temporary file (0600, created exclusively) then renamed over, so a reader never sees
 * half a file. Two processes saving at once may lose one's new verdicts: those files are hashed again.
 */
const log = logger("release:verdicts");

/** The cache's name, in the release folder or in INFERNET_HOME (see above for which). */
export const VERDICTS_FILE = "runtime-verdicts.json";
/** Written into the file; any other value (an older or foreign file) is ignored. */
export const VERDICTS_FORMAT = "infernet-runtime-verdicts/1";
/** Verdicts kept; the oldest go first. A full release has ~70 runtime files, so this holds ~30 releases. */
export const MAX_VERDICTS = 2048;
/** Largest cache file read: MAX_VERDICTS entries of up to ~1.2 KB each (paths are capped at 1024). */
export const MAX_VERDICTS_BYTES = 4 * 1024 * 1024;
/** Longest path accepted as a key. */
const MAX_PATH_CHARS = 1024;
/**
 * A file changed less than this long ago gets no verdict (it is still hashed and may pass). Timestamps
 * are coarse (a kernel tick, 2 s on FAT): a file rewritten within the same tick as the write we saw would
 * show the same mtime and ctime. Once this has passed, any later write gives a later timestamp.
 */
export const RACY_WINDOW_NS = 2_000_000_000n;

const DIGITS = /^\d{1,24}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/** What changes when a file changes: stat's fields as decimal strings (bigint in memory, JSON-safe on disk). */
export interface FileKey {
  size: string;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
  dev: string;
}

const keySchema = z
  .object({
    size: z.string().regex(DIGITS),
    mtimeNs: z.string().regex(DIGITS),
    ctimeNs: z.string().regex(DIGITS),
    ino: z.string().regex(DIGITS),
    dev: z.string().regex(DIGITS),
  })
  .strict();

const verdictSchema = keySchema.extend({ sha256: z.string().regex(SHA256_HEX) }).strict();
type Verdict = z.infer<typeof verdictSchema>;

const fileSchema = z
  .object({
    format: z.literal(VERDICTS_FORMAT),
    verdicts: z.record(z.string().max(MAX_PATH_CHARS).refine(isAbsolute, "paths are absolute"), verdictSchema),
  })
  .strict();

/** The key of the file at `path` now (follows links, as the hash and the loader do). */
export function fileKey(path: string): FileKey {
  const s = statSync(path, { bigint: true });
  return {
    size: String(s.size),
    mtimeNs: String(s.mtimeNs),
    ctimeNs: String(s.ctimeNs),
    ino: String(s.ino),
    dev: String(s.dev),
  };
}

/** When the file last changed, content or metadata: the later of its mtime and ctime. */
export function lastChangeNs(key: FileKey): bigint {
  const mtime = BigInt(key.mtimeNs);
  const ctime = BigInt(key.ctimeNs);
  return mtime > ctime ? mtime : ctime;
}

function sameKey(a: FileKey, b: FileKey): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino && a.dev === b.dev;
}

/**
 * Where a release's verdicts are kept: in the release folder if this user may write it, else in
 * INFERNET_HOME (the reasons are in this module's comment).
 */
export function verdictsPath(releaseDir: string, home: string = resolveHome()): string {
  try {
    accessSync(releaseDir, constants.W_OK);
    return join(releaseDir, VERDICTS_FILE);
  } catch {
    return join(home, VERDICTS_FILE);
  }
}

export interface VerdictsOptions {
  /** The clock, in ns since the epoch, for the racy-window rule; tests move it. */
  now?: () => bigint;
}

/** The verdicts of one cache file, read once; `save()` writes back what this process added. */
export class Verdicts {
  readonly path: string;
  private readonly known: Map<string, Verdict>;
  private readonly added = new Map<string, Verdict>();
  private readonly now: () => bigint;

  constructor(path: string, options: VerdictsOptions = {}) {
    this.path = path;
    this.now = options.now ?? (() => BigInt(Date.now()) * 1_000_000n);
    this.known = readVerdicts(path);
  }

  /** Whether `path`, as `key` shows it now, was already found to have this sha256. */
  passed(path: string, sha256: string, key: FileKey): boolean {
    const verdict = this.added.get(path) ?? this.known.get(path);
    return verdict !== undefined && verdict.sha256 === sha256 && sameKey(verdict, key);
  }

  /**
   * Remembers that `path` hashed to `sha256` while it had `before` (stat taken before hashing). Nothing is
   * kept if the file changed while it was hashed, or so recently that a same-tick rewrite could not be seen.
   */
  record(path: string, sha256: string, before: FileKey): void {
    let after: FileKey;
    try {
      after = fileKey(path);
    } catch {
      return;
    }
    if (!sameKey(before, after)) return;
    if (lastChangeNs(after) > this.now() - RACY_WINDOW_NS) return;
    this.added.set(path, { ...after, sha256 });
  }

  /** Verdicts added since the file was read (not yet saved). */
  get pending(): number {
    return this.added.size;
  }

  /**
   * Writes the file back with this process's verdicts added to what is on disk now (another process may
   * have saved since). Never throws: a cache that cannot be written only means hashing next time.
   */
  save(): void {
    if (this.added.size === 0) return;
    const merged = readVerdicts(this.path);
    for (const [path, verdict] of this.added) {
      // Delete first so that a renewed verdict moves to the end: the oldest are dropped first.
      merged.delete(path);
      merged.set(path, verdict);
    }
    const entries = [...merged].slice(-MAX_VERDICTS);
    const text = `${JSON.stringify({ format: VERDICTS_FORMAT, verdicts: Object.fromEntries(entries) })}\n`;
    try {
      writeFileAtomic(this.path, text);
      for (const [path, verdict] of this.added) this.known.set(path, verdict);
      this.added.clear();
    } catch (err) {
      log.debug("runtime verdicts not saved", { path: this.path, reason: errorMessage(err) });
    }
  }
}

/** The verdicts in `path`, or none if the file is absent or not one this user wrote in this format. */
function readVerdicts(path: string): Map<string, Verdict> {
  const ignore = (reason: string) => {
    log.debug("runtime verdicts ignored", { path, reason });
    return new Map<string, Verdict>();
  };
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOENT" ? new Map() : ignore(errorMessage(err));
  }
  let text: string;
  try {
    const s = fstatSync(fd);
    if (!s.isFile()) return ignore("not a regular file");
    if (s.uid !== process.getuid?.()) return ignore(`owned by uid ${s.uid}`);
    if ((s.mode & 0o077) !== 0) return ignore(`mode ${(s.mode & 0o777).toString(8)} is open to others`);
    if (s.size > MAX_VERDICTS_BYTES) return ignore(`too large (${s.size} bytes)`);
    text = readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return ignore("not JSON");
  }
  const result = fileSchema.safeParse(parsed);
  if (!result.success) return ignore(`malformed: ${result.error.issues[0]?.message}`);
  const entries = Object.entries(result.data.verdicts);
  if (entries.length > MAX_VERDICTS) return ignore(`too many verdicts (${entries.length})`);
  return new Map(entries);
}
