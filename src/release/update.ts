import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { basename, join, relative, resolve, sep } from "node:path";
import { throwIfAborted } from "../util/abort.ts";
import { ConfigError, DownloadError, errorMessage, IntegrityError, RuntimeError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import {
  archiveName,
  BINARY_PATH,
  LATEST_FILE,
  LINK_NAME,
  RELEASE_ARCHES,
  RELEASE_OSES,
  type ReleaseArch,
  type ReleaseOs,
  releaseName,
  SUMS_FILE,
  VERSIONS_DIR,
} from "./layout.ts";

/**
 * Self-update of an installed layout (see layout.ts): fetch the release, check its sha256 against
 * SHA256SUMS, extract it beside the running version, run the new binary's `--version` as a self-test,
 * and only then swap the `infernet` symlink with one rename (atomic: a concurrent `infernet` starts
 * either the old or the new binary, never neither). A failed self-test leaves the link alone. Then
 * versions before the one replaced are removed (see pruneVersions; each is 100-450 MB).
 */
const log = logger("release:update");

/** `latest` holds one version line; anything longer is not a version. */
export const MAX_LATEST_BYTES = 256;
/** SHA256SUMS lists a handful of archives. */
export const MAX_SUMS_BYTES = 64 * 1024;
/** A release archive is tens of MB (the binary plus native runtimes); more is not ours. */
export const MAX_ARCHIVE_BYTES = 2 * 1024 ** 3;
/** The new binary's `--version` starts in well under a second; a hang is a failed self-test. */
export const SELF_TEST_TIMEOUT_MS = 30_000;
/** Versions as releases name them; also keeps a server's answer out of path tricks. */
const VERSION_PATTERN = /^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$/;

/** The new binary failed its self-test; the update was rolled back (the link was never changed). */
export class SelfTestError extends RuntimeError {}
/** Not running from an installed layout: nothing to update in place. */
export class NotInstalledError extends ConfigError {}

export interface Installation {
  /** Folder holding the `infernet` link and `.versions/`. */
  dir: string;
  /** The version the link points at now. */
  version: string;
}

/**
 * Finds the installed layout: `installDir` when given (INFERNET_INSTALL_DIR), else the folder two
 * levels above `.versions/<v>/bin/infernet` when the running executable is one. `fromSource` names
 * the entry script when running under bun from a checkout, to say so.
 */
export function findInstallation(options: {
  installDir?: string;
  execPath: string;
  fromSource?: string;
}): Installation {
  let dir = options.installDir ? resolve(options.installDir) : undefined;
  if (!dir) {
    const real = safeRealpath(options.execPath);
    const parts = real.split(sep);
    const at = parts.lastIndexOf(VERSIONS_DIR);
    if (at < 1 || parts.slice(at + 2).join("/") !== BINARY_PATH) {
      throw new NotInstalledError(
        options.fromSource
          ? `update: running from source (${options.fromSource}), not from an installed release`
          : `update: ${real} is not an installed release (no ${VERSIONS_DIR}/<version>/${BINARY_PATH})`,
        {
          hint: options.fromSource
            ? "update a checkout with git pull; install a release with install.sh"
            : "install with install.sh, or set INFERNET_INSTALL_DIR to the folder holding the infernet link",
        },
      );
    }
    dir = parts.slice(0, at).join(sep) || sep;
  }
  const link = join(dir, LINK_NAME);
  let target: string;
  try {
    if (!lstatSync(link).isSymbolicLink()) throw new Error("not a symlink");
    target = readlinkSync(link);
  } catch (cause) {
    throw new NotInstalledError(`update: ${link} is not the symlink an installed release has`, {
      hint: "reinstall with install.sh (it creates the link), or point INFERNET_INSTALL_DIR at the install folder",
      cause,
    });
  }
  const parts = relative(dir, resolve(dir, target)).split(sep);
  const version = parts[0] === VERSIONS_DIR ? parts[1] : undefined;
  if (!version || parts.slice(2).join("/") !== BINARY_PATH) {
    throw new NotInstalledError(`update: ${link} points at ${target}, not into ${VERSIONS_DIR}/`, {
      hint: "reinstall with install.sh",
    });
  }
  return { dir, version };
}

function safeRealpath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** The platform's release names, or a clear refusal. */
export function releasePlatform(platform: string, arch: string): { os: ReleaseOs; arch: ReleaseArch } {
  if (
    !(RELEASE_OSES as readonly string[]).includes(platform) ||
    !(RELEASE_ARCHES as readonly string[]).includes(arch)
  ) {
    throw new ConfigError(`update: no release is built for ${platform}-${arch}`, {
      hint: `releases exist for ${RELEASE_OSES.join("/")} on ${RELEASE_ARCHES.join("/")}; build from source`,
    });
  }
  return { os: platform as ReleaseOs, arch: arch as ReleaseArch };
}

export function checkVersion(version: string, source: string): string {
  if (!VERSION_PATTERN.test(version)) {
    throw new IntegrityError(`update: ${source} gave "${version.slice(0, 40)}", which is not a version`, {
      hint: "check INFERNET_DOWNLOAD_URL, or name one with --version (e.g. 0.2.0)",
    });
  }
  return version;
}

export interface UpdateOptions {
  /** Download server base (INFERNET_DOWNLOAD_URL). */
  baseUrl: string;
  installation: Installation;
  os: ReleaseOs;
  arch: ReleaseArch;
  /** A pinned version; default: the server's `latest`. */
  version?: string;
  /** Only say whether an update exists. */
  checkOnly?: boolean;
  signal?: AbortSignal;
  /** Told what is happening, one short line each. */
  onStep?: (line: string) => void;
}

export type UpdateOutcome =
  | { status: "up-to-date"; version: string }
  | { status: "available"; from: string; to: string }
  | { status: "updated"; from: string; to: string; binary: string; pruned: Pruned };

/** Old versions removed after a switch, and those that could not be (logged; the update stands). */
export interface Pruned {
  removed: { version: string; bytes: number }[];
  failed: { version: string; error: string }[];
}

export async function update(options: UpdateOptions): Promise<UpdateOutcome> {
  const { installation, baseUrl, signal } = options;
  const step = options.onStep ?? (() => {});
  const base = baseUrl.replace(/\/+$/, "");
  const to = options.version
    ? checkVersion(options.version, "--version")
    : checkVersion(
        (await fetchText(`${base}/${LATEST_FILE}`, MAX_LATEST_BYTES, signal)).trim(),
        `${base}/${LATEST_FILE}`,
      );
  const from = installation.version;
  if (to === from) return { status: "up-to-date", version: from };
  if (options.checkOnly) return { status: "available", from, to };

  const archive = archiveName(to, options.os, options.arch);
  const sums = await fetchText(`${base}/${to}/${SUMS_FILE}`, MAX_SUMS_BYTES, signal);
  const expected = sumFor(sums, archive);
  if (!expected) {
    throw new IntegrityError(`update: ${base}/${to}/${SUMS_FILE} lists no ${archive}`, {
      hint: "this release may not be built for this platform; try another --version",
    });
  }

  const versions = join(installation.dir, VERSIONS_DIR);
  const staging = join(versions, `.update-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const target = join(versions, to);
  try {
    step(`downloading ${archive}`);
    const file = join(staging, archive);
    const actual = await download(`${base}/${to}/${archive}`, file, signal);
    if (actual !== expected) {
      throw new IntegrityError(`update: ${archive} has sha256 ${actual}, but ${SUMS_FILE} says ${expected}; refused`, {
        hint: "nothing was changed; try again later, or report a corrupted mirror",
      });
    }
    step(`sha256 ok, extracting into ${target}`);
    await extract(file, staging, signal);
    const top = join(staging, releaseName(to, options.os, options.arch));
    if (!existsSync(join(top, BINARY_PATH))) {
      throw new IntegrityError(`update: ${archive} has no ${releaseName(to, options.os, options.arch)}/${BINARY_PATH}`);
    }
    rmSync(target, { recursive: true, force: true });
    renameSync(top, target);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }

  const binary = join(target, BINARY_PATH);
  step(`self-test: ${binary} --version`);
  const failure = await selfTest(binary, to, signal);
  if (failure) {
    rmSync(target, { recursive: true, force: true });
    const why = `update: the new binary (${to}) failed its self-test: ${failure}; rolled back, still on ${from}`;
    throw new SelfTestError(why, { hint: "the link was not changed; report this release" });
  }
  switchLink(installation.dir, join(VERSIONS_DIR, to, BINARY_PATH));
  log.info("updated", { from, to, dir: installation.dir });
  const pruned = pruneVersions(installation.dir, [to, from]);
  return { status: "updated", from, to, binary, pruned };
}

/**
 * Removes every version under `<dir>/.versions/` except `keep` (after an update: the new one, and the
 * one it replaced so a rollback stays possible) and those a running process was started from (a
 * daemon not yet restarted still loads its native runtime from its own folder). Only folders named
 * like versions are touched: `.update-*` and `.install.*` are a concurrent update's or install's.
 * A failure is logged and reported, never thrown: the update itself has succeeded by then.
 */
export function pruneVersions(dir: string, keep: readonly string[], running = runningVersions(dir)): Pruned {
  const pruned: Pruned = { removed: [], failed: [] };
  const versions = join(dir, VERSIONS_DIR);
  const old = readdirSync(versions).filter((v) => VERSION_PATTERN.test(v) && !keep.includes(v) && !running.has(v));
  for (const version of old.sort()) {
    const path = join(versions, version);
    try {
      if (!lstatSync(path).isDirectory()) continue;
      const bytes = sizeOf(path);
      rmSync(path, { recursive: true });
      pruned.removed.push({ version, bytes });
      log.info("old version removed", { path, bytes });
    } catch (err) {
      pruned.failed.push({ version, error: errorMessage(err) });
      log.warn("cannot remove an old version", { path, error: errorMessage(err) });
    }
  }
  return pruned;
}

/** Versions in `<dir>/.versions/` run by this process or (Linux) any process whose /proc/<pid>/exe we can read. */
export function runningVersions(dir: string): Set<string> {
  const versions = safeRealpath(join(dir, VERSIONS_DIR)) + sep;
  const executables = [safeRealpath(process.execPath)];
  const pids = process.platform === "linux" && existsSync("/proc") ? readdirSync("/proc") : [];
  for (const pid of pids.filter((name) => /^\d+$/.test(name))) {
    try {
      executables.push(readlinkSync(`/proc/${pid}/exe`));
    } catch {}
  }
  const running = executables.filter((exe) => exe.startsWith(versions));
  return new Set(running.map((exe) => exe.slice(versions.length).split(sep)[0] ?? ""));
}

/** Bytes held under `path`: its entries' sizes added up. */
function sizeOf(path: string): number {
  const entries = readdirSync(path, { recursive: true, encoding: "utf8" });
  return entries.reduce((sum, entry) => sum + lstatSync(join(path, entry)).size, 0);
}

/** The sha256 SHA256SUMS gives for a file ("<hex>  <name>" or "<hex> *<name>" lines). */
export function sumFor(sums: string, file: string): string | undefined {
  for (const line of sums.split("\n")) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/i.exec(line.trim());
    if (m?.[1] && m[2] === file) return m[1].toLowerCase();
  }
  return undefined;
}

async function get(url: string, signal: AbortSignal | undefined): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, { ...(signal ? { signal } : {}), redirect: "follow" });
  } catch (cause) {
    throwIfAborted(signal);
    throw new DownloadError(`update: cannot reach ${url}: ${errorMessage(cause)}`, {
      hint: "check the network, or set INFERNET_DOWNLOAD_URL to a mirror",
      cause,
    });
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new DownloadError(`update: ${url} answered HTTP ${res.status}`, {
      hint: res.status === 404 ? "no such release; check --version or INFERNET_DOWNLOAD_URL" : "try again later",
    });
  }
  return res;
}

/** Streams a response body, refusing more than `limit` bytes. */
async function* capped(res: Response, url: string, limit: number): AsyncGenerator<Uint8Array> {
  if (!res.body) return;
  let total = 0;
  for await (const chunk of res.body) {
    total += chunk.byteLength;
    if (total > limit) throw new DownloadError(`update: ${url} is larger than the ${limit} bytes allowed`);
    yield chunk;
  }
}

async function fetchText(url: string, limit: number, signal: AbortSignal | undefined): Promise<string> {
  const res = await get(url, signal);
  const chunks: Uint8Array[] = [];
  for await (const chunk of capped(res, url, limit)) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

/** Downloads to `path`, returning the sha256 of what was written. */
async function download(url: string, path: string, signal: AbortSignal | undefined): Promise<string> {
  const res = await get(url, signal);
  const hash = createHash("sha256");
  const writer = Bun.file(path).writer();
  try {
    for await (const chunk of capped(res, url, MAX_ARCHIVE_BYTES)) {
      hash.update(chunk);
      writer.write(chunk);
    }
  } finally {
    await writer.end();
  }
  return hash.digest("hex");
}

async function extract(archive: string, into: string, signal: AbortSignal | undefined): Promise<void> {
  const proc = Bun.spawn(["tar", "-xzf", basename(archive), "--no-same-owner"], {
    cwd: into,
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    ...(signal ? { signal } : {}),
  });
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  throwIfAborted(signal);
  if (code !== 0) {
    throw new IntegrityError(`update: cannot extract ${basename(archive)}: ${stderr.trim().split("\n")[0] ?? ""}`, {
      hint: "the archive is damaged or tar is missing",
    });
  }
}

/** Runs `<binary> --version`; returns why it failed, or undefined when it printed the version. */
async function selfTest(binary: string, version: string, signal: AbortSignal | undefined): Promise<string | undefined> {
  const deadline = AbortSignal.timeout(SELF_TEST_TIMEOUT_MS);
  const spawn = () =>
    Bun.spawn([binary, "--version"], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      signal: signal ? AbortSignal.any([signal, deadline]) : deadline,
    });
  let proc: ReturnType<typeof spawn>;
  try {
    proc = spawn();
  } catch (err) {
    return `it does not start (${errorMessage(err)})`;
  }
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  throwIfAborted(signal);
  if (deadline.aborted) return `--version did not answer within ${SELF_TEST_TIMEOUT_MS / 1000} s`;
  if (code !== 0) {
    const said = (stderr.trim() || stdout.trim()).split("\n")[0]?.slice(0, 200);
    return `--version exited with code ${code}${said ? ` (${said})` : ""}`;
  }
  if (stdout.trim() !== `infernet ${version}`)
    return `--version printed "${stdout.trim().slice(0, 80)}", not "infernet ${version}"`;
  return undefined;
}

/** Points `<dir>/infernet` at `target` (relative to dir) with a rename over the old link. */
function switchLink(dir: string, target: string): void {
  const tmp = join(dir, `.${LINK_NAME}.${process.pid}.new`);
  rmSync(tmp, { force: true });
  symlinkSync(target, tmp);
  renameSync(tmp, join(dir, LINK_NAME));
  log.debug("link switched", { link: join(dir, LINK_NAME), target });
}
