import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { z } from "zod";
import { IntegrityError, RuntimeError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import { VERSION } from "../version.ts";
import { RUNTIME_DIR, RUNTIME_MANIFEST, type RuntimeManifest } from "./layout.ts";
import { fileKey, Verdicts, verdictsPath } from "./verdicts.ts";

/**
 * The compiled binary's native runtime: `<dir of binary>/../runtime/`, every file listed with its sha256
 * in `runtime/manifest.json`. A native piece (the QUIC addon, llama.cpp's binaries, onnxruntime) is
 * loaded only after every file of its folder matches the manifest and no unlisted file sits beside them:
 * llama.cpp's ggml loads every `libggml-*.so` it finds in its folder, so a planted library would run too.
 *
 * A file whose stat is unchanged since an earlier process hashed it is not hashed again (`verdicts.ts`).
 *
 * Run from source nothing here is used: scripts/build.ts swaps the packages' own loaders for calls into
 * this module only in the compiled bundle (see `src/release/bundle-plugin.ts`).
 */
const log = logger("release:runtime");

/** Largest manifest accepted: a few hundred files at ~100 bytes each, with room to spare. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;
/** Read size when hashing runtime files (some are hundreds of MB: never read whole). */
const HASH_CHUNK_BYTES = 4 * 1024 * 1024;

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** A path under runtime/: relative, forward slashes, no `..`, no empty or dot segments. */
const RUNTIME_PATH = /^(?!.*(?:^|\/)\.{1,2}(?:\/|$))[A-Za-z0-9._+-]+(?:\/[A-Za-z0-9._+-]+)*$/;

const manifestSchema = z.object({
  version: z.string().min(1).max(64),
  files: z.record(z.string().regex(RUNTIME_PATH).max(512), z.string().regex(SHA256_HEX)),
});

/** The folder a compiled binary's runtime lives in; undefined when running from source. */
export function runtimeRoot(): string | undefined {
  if (!Bun.isStandaloneExecutable) return undefined;
  // process.execPath is the resolved binary (the installer's symlink points at .versions/<v>/bin/infernet).
  return resolve(dirname(process.execPath), "..", RUNTIME_DIR);
}

/** Manifests read, by release folder; runtime folders already checked; verdict caches, by release folder. */
const manifests = new Map<string, RuntimeManifest>();
const verified = new Set<string>();
const verdictCaches = new Map<string, Verdicts>();

/** Reads and validates `runtime/manifest.json` of a release folder (the parent of bin/ and runtime/). */
export function readManifest(releaseDir: string): RuntimeManifest {
  const path = join(releaseDir, RUNTIME_MANIFEST);
  let size: number;
  try {
    size = statSync(path).size;
  } catch (cause) {
    throw new IntegrityError(`the runtime manifest ${path} is missing`, { hint: "reinstall Infernet", cause });
  }
  if (size > MAX_MANIFEST_BYTES) throw new IntegrityError(`the runtime manifest ${path} is too large (${size} bytes)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (cause) {
    throw new IntegrityError(`the runtime manifest ${path} is not JSON`, { hint: "reinstall Infernet", cause });
  }
  const result = manifestSchema.safeParse(parsed);
  if (!result.success) {
    throw new IntegrityError(`the runtime manifest ${path} is malformed: ${result.error.issues[0]?.message}`, {
      hint: "reinstall Infernet",
    });
  }
  return result.data;
}

/** sha256 of a file, hex, read in chunks. */
export function sha256File(path: string): string {
  const hasher = new Bun.CryptoHasher("sha256");
  const buffer = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
  const fd = openSync(path, "r");
  try {
    for (;;) {
      const n = readSync(fd, buffer, 0, HASH_CHUNK_BYTES, null);
      if (n === 0) break;
      hasher.update(buffer.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hasher.digest("hex");
}

/** Every regular file under `dir`, as forward-slash paths relative to `base`. */
export function listFiles(dir: string, base: string = dir): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(full, base));
    else out.push(relative(base, full).split(sep).join("/"));
  }
  return out.sort();
}

/** What checking one piece took: its files, and how many of them had to be hashed (no verdict matched). */
export interface PieceCheck {
  dir: string;
  files: number;
  hashed: number;
}

/**
 * Checks every file of `runtime/<piece>/` against `manifest`, hashing only those `verdicts` cannot vouch
 * for and recording the new ones there (saving is the caller's). Throws IntegrityError on a missing,
 * changed or unlisted file, RuntimeError when the release has no such piece.
 */
export function checkPiece(
  releaseDir: string,
  piece: string,
  manifest: RuntimeManifest,
  verdicts: Verdicts,
): PieceCheck {
  const runtime = join(releaseDir, RUNTIME_DIR);
  const dir = join(runtime, piece);
  const prefix = `${piece}/`;
  const expected = Object.entries(manifest.files).filter(([path]) => path.startsWith(prefix));
  if (expected.length === 0 || !existsSync(dir)) {
    throw new RuntimeError(`this build of Infernet has no native runtime "${piece}"`, {
      hint: "download the release for your platform",
    });
  }
  const present = listFiles(dir, runtime);
  const listed = new Set(expected.map(([path]) => path));
  const unlisted = present.find((path) => !listed.has(path));
  if (unlisted) {
    throw new IntegrityError(`runtime/${unlisted} is not part of this release`, { hint: "remove it or reinstall" });
  }
  let hashed = 0;
  for (const [path, sha] of expected) {
    const full = resolve(runtime, path);
    if (!existsSync(full)) throw new IntegrityError(`runtime/${path} is missing`, { hint: "reinstall Infernet" });
    const key = fileKey(full);
    if (verdicts.passed(full, sha, key)) continue;
    hashed += 1;
    if (sha256File(full) !== sha) {
      throw new IntegrityError(`runtime/${path} does not match its sha256 in the manifest`, {
        hint: "reinstall Infernet",
      });
    }
    verdicts.record(full, sha, key);
  }
  return { dir, files: expected.length, hashed };
}

/**
 * Checks every file of `runtime/<piece>/` against the manifest (once per process) and returns the
 * folder's absolute path. Throws IntegrityError on a missing, changed or unlisted file.
 */
export function verifiedPiece(releaseDir: string, piece: string): string {
  const dir = join(releaseDir, RUNTIME_DIR, piece);
  if (verified.has(dir)) return dir;
  let manifest = manifests.get(releaseDir);
  if (!manifest) {
    manifest = readManifest(releaseDir);
    manifests.set(releaseDir, manifest);
  }
  if (manifest.version !== VERSION) {
    throw new IntegrityError(`the native runtime is for Infernet ${manifest.version}, this binary is ${VERSION}`, {
      hint: "reinstall Infernet",
    });
  }
  let verdicts = verdictCaches.get(releaseDir);
  if (!verdicts) {
    verdicts = new Verdicts(verdictsPath(releaseDir));
    verdictCaches.set(releaseDir, verdicts);
  }
  const check = checkPiece(releaseDir, piece, manifest, verdicts);
  verdicts.save();
  log.debug("native runtime verified", { piece, files: check.files, hashed: check.hashed });
  verified.add(dir);
  return dir;
}

/** The release folder (parent of bin/ and runtime/) of this compiled binary. */
function releaseOf(): string | undefined {
  const root = runtimeRoot();
  return root === undefined ? undefined : dirname(root);
}

function compiledRelease(): string {
  const release = releaseOf();
  if (release === undefined) throw new RuntimeError("the native runtime folder is only used by a compiled binary");
  return release;
}

/** Loads a verified napi addon from `runtime/<piece>/<file>` (compiled binary only). */
export function loadNativeAddon(piece: string, file: string): unknown {
  const dir = verifiedPiece(compiledRelease(), piece);
  const module = { exports: {} as unknown };
  process.dlopen(module, join(dir, file));
  return module.exports;
}

/**
 * node-llama-cpp's prebuilt-binaries folder for one variant (`cpu`, `vulkan`, `cuda`, `cuda-ext`),
 * verified; the variant packages' `getBinsDir` is replaced by this in the compiled bundle. A variant
 * this build lacks, or one that fails its check, is reported as absent so that "auto" falls back.
 */
export function llamaBinsDir(variant: string): string | undefined {
  try {
    return verifiedPiece(compiledRelease(), `llama/${variant}`);
  } catch (err) {
    if (err instanceof IntegrityError) log.warn("llama.cpp binaries failed their check", { variant, err });
    else log.debug("llama.cpp variant not in this build", { variant });
    return undefined;
  }
}
