import { existsSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { type Config, loadConfig } from "../config/index.ts";
import { IDENTITY_FILE, loadOrCreateIdentity } from "../node/identity.ts";
import { Store } from "../store/db.ts";
import { MIGRATIONS } from "../store/migrations.ts";
import { errorMessage, InfernetError } from "../util/errors.ts";

/**
 * The cheap, local checks of `infernet doctor`: config file, identity key, database, disk, clock.
 * Each returns a verdict and, when it is not ok, one line saying how to fix it. None of them
 * throws: a check that cannot run is itself the finding.
 */

/** "skip": the check could not apply here (a model not downloaded); it is not a failure. */
export type CheckStatus = "ok" | "warn" | "fail" | "skip";

export interface CheckResult {
  /** Short name ("config", "disk: models"). */
  name: string;
  status: CheckStatus;
  /** What was found, in one line. */
  summary: string;
  /** How to fix it, in one line; present for every non-ok verdict. */
  fix?: string;
}

/** Below this much free space Infernet cannot download even the smallest catalog model and keep its database. */
export const MIN_FREE_BYTES = 256 * 1024 * 1024;
/** Below this much, a warning: enough for the tiny models, not for a real language model (a few GiB each). */
export const WARN_FREE_BYTES = 4 * 1024 * 1024 * 1024;
/** Years outside this range mean a clock that was never set (1970) or set wildly wrong. */
export const MIN_PLAUSIBLE_YEAR = 2024;
export const MAX_PLAUSIBLE_YEAR = 2100;
/**
 * The system clock and the filesystem's clock (a just-written file's mtime) may differ this much
 * before we say so: more means a network filesystem with another clock, which breaks the model
 * cache's size+mtime check.
 */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

export function ok(name: string, summary: string): CheckResult {
  return { name, status: "ok", summary };
}

export function notOk(name: string, status: Exclude<CheckStatus, "ok">, summary: string, fix: string): CheckResult {
  return { name, status, summary, fix };
}

/** The hint a typed error carries, or a fallback. */
export function hintOf(err: unknown, fallback: string): string {
  return err instanceof InfernetError && err.hint ? err.hint : fallback;
}

/** Loads the configuration as every command would; a bad file or variable is a failure. */
export function checkConfig(env: Record<string, string | undefined>): { result: CheckResult; config?: Config } {
  try {
    const config = loadConfig({ env });
    const file = join(config.home, "config.json");
    const where = existsSync(file) ? file : `defaults (no ${file})`;
    return { result: ok("config", `valid: ${where}`), config };
  } catch (err) {
    return { result: notOk("config", "fail", errorMessage(err), hintOf(err, "fix or delete config.json")) };
  }
}

/** The node key: absent is fine (made on first start), readable by others or unreadable is not. */
export async function checkIdentity(home: string): Promise<CheckResult> {
  const path = join(home, IDENTITY_FILE);
  if (!existsSync(path)) return ok("identity", `none yet (${path} is created, mode 0600, on first start)`);
  try {
    await loadOrCreateIdentity(home);
    const mode = (statSync(path).mode & 0o777).toString(8);
    return ok("identity", `${path}, mode ${mode}`);
  } catch (err) {
    return notOk("identity", "fail", errorMessage(err), hintOf(err, `move ${path} away to create a new identity`));
  }
}

/** Opens (creating if needed) and migrates the database, as every command does. */
export function checkDatabase(home: string): CheckResult {
  const path = join(home, "infernet.db");
  const latest = MIGRATIONS.at(-1)?.version ?? 0;
  try {
    using store = Store.open(home);
    const version = store.version();
    return ok("database", `${path}, schema version ${version} of ${latest}`);
  } catch (err) {
    return notOk(
      "database",
      "fail",
      `${path}: ${errorMessage(err)}`,
      hintOf(err, `move ${path} away (a new one is created; local job history and benchmarks are lost)`),
    );
  }
}

/** The nearest folder that exists at or above `path` (the models folder may not exist yet). */
function existingAncestor(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

const gib = (n: number) => `${(n / 1024 ** 3).toFixed(1)} GiB`;

/** Free space where `path` lives, against `MIN_FREE_BYTES` (fail) and `WARN_FREE_BYTES` (warn). */
export function checkDisk(name: string, path: string, minFree = MIN_FREE_BYTES, warnFree = WARN_FREE_BYTES) {
  try {
    const fs = statfsSync(existingAncestor(path));
    const free = fs.bavail * fs.bsize;
    const text = `${gib(free)} free at ${path}`;
    if (free < minFree) {
      return notOk(
        name,
        "fail",
        `${text}, under the ${gib(minFree)} minimum`,
        `free space there, or move it (set ${name === "disk: models" ? "INFERNET_MODELS_DIR" : "INFERNET_HOME"} elsewhere)`,
      );
    }
    if (free < warnFree) {
      return notOk(
        name,
        "warn",
        `${text}: enough for the tiny models, not for a large language model`,
        "free a few GiB before pulling large models",
      );
    }
    return ok(name, text);
  } catch (err) {
    return notOk(
      name,
      "fail",
      `cannot read free space at ${path}: ${errorMessage(err)}`,
      "check that the folder is readable",
    );
  }
}

/**
 * The clock, without the network: the year must be plausible (TLS certificates, job deadlines and
 * leases all compare times), and a file written now must carry about the same time (the model cache
 * trusts size+mtime).
 */
export function checkClock(home: string, now: () => number = Date.now): CheckResult {
  const t = now();
  const year = new Date(t).getUTCFullYear();
  if (year < MIN_PLAUSIBLE_YEAR || year > MAX_PLAUSIBLE_YEAR) {
    return notOk(
      "clock",
      "warn",
      `the system clock says ${new Date(t).toISOString()}`,
      "set the clock (e.g. `sudo timedatectl set-ntp true`)",
    );
  }
  const probe = join(home, `.doctor-clock.${process.pid}`);
  try {
    writeFileSync(probe, "");
    const skew = statSync(probe).mtimeMs - t;
    if (Math.abs(skew) > MAX_CLOCK_SKEW_MS) {
      return notOk(
        "clock",
        "warn",
        `files in ${home} are stamped ${Math.round(skew / 1000)} s from the system clock`,
        "put INFERNET_HOME on a local disk, or sync the file server's clock",
      );
    }
    return ok("clock", `${new Date(t).toISOString()} (file times agree)`);
  } catch (err) {
    return notOk(
      "clock",
      "warn",
      `cannot write a probe file in ${home}: ${errorMessage(err)}`,
      "check INFERNET_HOME permissions",
    );
  } finally {
    rmSync(probe, { force: true });
  }
}
