import { readFileSync, statSync, unlinkSync, utimesSync } from "node:fs";
import { open } from "node:fs/promises";
import { hostname } from "node:os";
import { sleep, throwIfAborted } from "../util/abort.ts";
import { logger } from "../util/logger.ts";

const log = logger("models:lock");

/** How often the holder touches its lock file to show it is alive. */
export const LOCK_HEARTBEAT_MS = 5_000;
/** A lock file untouched for this long belongs to a process that died (or a machine that went away). */
export const LOCK_STALE_MS = 30_000;
/** How often a waiting process looks at the lock again. */
export const LOCK_POLL_MS = 100;

export interface FileLock extends AsyncDisposable {
  readonly path: string;
  release(): Promise<void>;
}

export interface LockOptions {
  signal?: AbortSignal;
  /** Called once when the lock is held by someone else and we start waiting. */
  onWait?: (holder: LockHolder | undefined) => void;
}

export interface LockHolder {
  pid: number;
  host: string;
  at: number;
}

/**
 * Takes an exclusive lock by creating `path` (O_EXCL), so two processes pulling the same model never
 * write the same partial file. A holder that died leaves a lock that is recognised as stale (dead pid
 * on this host, or no heartbeat for LOCK_STALE_MS) and taken over. Waits, abortably, while a live
 * process holds it.
 */
export async function acquireLock(path: string, options: LockOptions = {}): Promise<FileLock> {
  let waited = false;
  for (;;) {
    throwIfAborted(options.signal);
    const lock = await tryCreate(path);
    if (lock) return lock;
    const holder = readHolder(path);
    if (isStale(path, holder)) {
      log.warn("removing stale lock", { path, holder });
      removeQuietly(path);
      continue;
    }
    if (!waited) {
      waited = true;
      log.info("waiting for lock", { path, holder });
      options.onWait?.(holder);
    }
    await sleep(LOCK_POLL_MS, options.signal);
  }
}

async function tryCreate(path: string): Promise<FileLock | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "wx", 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return undefined;
    throw err;
  }
  const holder: LockHolder = { pid: process.pid, host: hostname(), at: Date.now() };
  await handle.writeFile(JSON.stringify(holder));
  await handle.close();
  const heartbeat = setInterval(() => {
    try {
      const now = new Date();
      utimesSync(path, now, now);
    } catch {
      // The lock was removed under us (treated as stale by someone); nothing useful to do here.
    }
  }, LOCK_HEARTBEAT_MS);
  heartbeat.unref();
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    clearInterval(heartbeat);
    removeQuietly(path);
  };
  return { path, release, [Symbol.asyncDispose]: release };
}

function readHolder(path: string): LockHolder | undefined {
  try {
    const raw = JSON.parse(readFileSync(path, "utf8")) as Partial<LockHolder>;
    if (typeof raw.pid === "number" && typeof raw.host === "string" && typeof raw.at === "number") {
      return { pid: raw.pid, host: raw.host, at: raw.at };
    }
  } catch {
    // Being written right now, or garbage: judged by its age below.
  }
  return undefined;
}

function isStale(path: string, holder: LockHolder | undefined): boolean {
  let mtime: number;
  try {
    mtime = statSync(path).mtimeMs;
  } catch {
    return false; // gone already; the next attempt to create it decides
  }
  if (Date.now() - mtime > LOCK_STALE_MS) return true;
  if (holder && holder.host === hostname() && !processAlive(holder.pid)) return true;
  return false;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}
