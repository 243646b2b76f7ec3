import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
import {
  archiveName,
  BINARY_PATH,
  LATEST_FILE,
  type ReleaseArch,
  type ReleaseOs,
  RUNTIME_MANIFEST,
  releaseName,
  SUMS_FILE,
} from "../../src/release/layout.ts";

/**
 * A fake of the release download server (the layout in src/release/layout.ts) for install and
 * update tests: a real HTTP server on 127.0.0.1 serving a folder shaped like the real one, and
 * small real release archives whose `bin/infernet` is a shell script, so no build is needed.
 */

export interface TestArchive {
  /** `infernet-<version>-<os>-<arch>.tar.gz` */
  name: string;
  bytes: Uint8Array;
  /** Lower-case hex sha256 of `bytes`, as SHA256SUMS lists it. */
  sha256: string;
}

/** A stand-in `bin/infernet` that answers `--version` like the real binary and echoes anything else. */
export function fakeBinaryScript(version: string): string {
  return `#!/bin/sh
if [ "\${1:-}" = --version ]; then echo "infernet ${version}"; exit 0; fi
echo "infernet ${version} (test binary): $*"
`;
}

/**
 * A real .tar.gz shaped like a release: one top folder holding `bin/infernet` (executable, the given
 * script or `fakeBinaryScript(version)`) and `runtime/manifest.json` (with one runtime file listed).
 */
export function makeTestArchive(
  version: string,
  os: ReleaseOs,
  arch: ReleaseArch,
  binaryScript: string = fakeBinaryScript(version),
): TestArchive {
  const work = mkdtempSync(join(tmpdir(), "infernet-archive-"));
  try {
    const top = releaseName(version, os, arch);
    const binary = join(work, top, BINARY_PATH);
    mkdirSync(join(binary, ".."), { recursive: true });
    writeFileSync(binary, binaryScript);
    chmodSync(binary, 0o755);
    const lib = "libtest.so";
    const libBytes = `test runtime library for ${top}\n`;
    mkdirSync(join(work, top, "runtime"), { recursive: true });
    writeFileSync(join(work, top, "runtime", lib), libBytes);
    const manifest = { version, files: { [lib]: sha256(new TextEncoder().encode(libBytes)) } };
    writeFileSync(join(work, top, RUNTIME_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    const name = archiveName(version, os, arch);
    const tar = Bun.spawnSync(["tar", "-czf", name, top], { cwd: work, stderr: "pipe" });
    if (tar.exitCode !== 0) throw new Error(`tar failed: ${tar.stderr.toString()}`);
    const bytes = new Uint8Array(readFileSync(join(work, name)));
    return { name, bytes, sha256: sha256(bytes) };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface PublishOptions {
  /** Make this the version `<base>/latest` names (default true). */
  latest?: boolean;
  /** SHA256SUMS lines to write instead of the true ones (to test a mismatch). */
  sums?: string;
}

/** Writes `archives` as release `version` under `root`, with a SHA256SUMS listing them. */
export function publishRelease(root: string, version: string, archives: TestArchive[], options: PublishOptions = {}) {
  const dir = join(root, version);
  mkdirSync(dir, { recursive: true });
  for (const a of archives) writeFileSync(join(dir, a.name), a.bytes);
  const sums = options.sums ?? archives.map((a) => `${a.sha256}  ${a.name}\n`).join("");
  writeFileSync(join(dir, SUMS_FILE), sums);
  if (options.latest ?? true) writeFileSync(join(root, LATEST_FILE), `${version}\n`);
}

export interface ReleaseServer extends AsyncDisposable {
  /** The base URL, for INFERNET_DOWNLOAD_URL. */
  url: string;
  /** Every request's path and status, in order. */
  requests: { path: string; status: number }[];
  /**
   * URL paths whose response is held (never answered) until the client goes away, to catch an
   * installer mid-download.
   */
  hold: Set<string>;
  stop(): Promise<void>;
}

/**
 * Serves the files under `root` (read at request time, so a test may change them between
 * requests) on 127.0.0.1 at a free port. Paths outside `root` are 404.
 */
export function serveReleases(root: string): ReleaseServer {
  const requests: { path: string; status: number }[] = [];
  const hold = new Set<string>();
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    async fetch(req) {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (hold.has(path)) {
        requests.push({ path, status: 0 });
        await new Promise<void>((resolve) => req.signal.addEventListener("abort", () => resolve(), { once: true }));
        return new Response(null, { status: 503 });
      }
      const rel = normalize(path).replace(/^\/+/, "");
      const file = join(root, rel);
      const inside = rel !== "" && !rel.startsWith("..") && existsSync(file) && statSync(file).isFile();
      const body = inside ? readFileSync(file) : undefined;
      const status = body ? 200 : 404;
      requests.push({ path, status });
      return body
        ? new Response(body, { headers: { "content-type": "application/octet-stream" } })
        : new Response("not found\n", { status });
    },
  });
  const stop = async () => {
    await server.stop(true);
  };
  return { url: `http://127.0.0.1:${server.port}`, requests, hold, stop, [Symbol.asyncDispose]: stop };
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
