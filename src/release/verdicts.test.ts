import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  appendFileSync,
  chmodSync,
  chownSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { RUNTIME_DIR, type RuntimeManifest } from "./layout.ts";
import { checkPiece, sha256File } from "./runtime.ts";
import {
  fileKey,
  lastChangeNs,
  MAX_VERDICTS,
  RACY_WINDOW_NS,
  VERDICTS_FILE,
  VERDICTS_FORMAT,
  Verdicts,
  verdictsPath,
} from "./verdicts.ts";

/**
 * The verdict cache on real files in a temporary release folder (runtime/<piece>/ plus a manifest), each
 * "process" being a fresh Verdicts read from the cache file. The clock is moved past the racy window
 * explicitly (files written by the test are brand new) rather than waited for.
 */
const PIECE = "llama/cpu";
const FILES = ["llama/cpu/libggml.so", "llama/cpu/libllama.so"];
/** A clock well after every file in these tests was written: their verdicts are not racy. */
const later = () => BigInt(Date.now()) * 1_000_000n + 2n * RACY_WINDOW_NS;

let tmp: ReturnType<typeof tempDir>;
let release: string;
let manifest: RuntimeManifest;
let cache: string;

beforeEach(() => {
  tmp = tempDir("infernet-verdicts-");
  release = join(tmp.path, "release");
  manifest = { version: "test", files: {} };
  for (const path of FILES) {
    const full = join(release, RUNTIME_DIR, path);
    mkdirSync(join(full, ".."), { recursive: true });
    writeFileSync(full, `native code of ${path}\n`);
    manifest.files[path] = sha256File(full);
  }
  cache = join(release, VERDICTS_FILE);
});

afterEach(() => tmp[Symbol.dispose]());

/** One process's check of the piece: reads the cache, checks, saves. */
function run(now: () => bigint = later) {
  const verdicts = new Verdicts(cache, { now });
  const check = checkPiece(release, PIECE, manifest, verdicts);
  verdicts.save();
  return check;
}

const file = (i: number) => join(release, RUNTIME_DIR, FILES[i]!);

describe("runtime verdicts", () => {
  test("a second process does not hash files an earlier one verified", () => {
    expect(run()).toMatchObject({ files: 2, hashed: 2 });
    expect(run()).toMatchObject({ files: 2, hashed: 0 });
    expect(run()).toMatchObject({ files: 2, hashed: 0 });
  });

  test("the cache file is 0600, in the format, keyed by absolute path, with no temporary file left", () => {
    run();
    expect(statSync(cache).mode & 0o777).toBe(0o600);
    const saved = JSON.parse(readFileSync(cache, "utf8")) as { format: string; verdicts: Record<string, unknown> };
    expect(saved.format).toBe(VERDICTS_FORMAT);
    expect(Object.keys(saved.verdicts).sort()).toEqual([resolve(file(0)), resolve(file(1))]);
    expect(readdirSync(release).sort()).toEqual([RUNTIME_DIR, VERDICTS_FILE]);
  });

  test("a byte appended after a verdict was cached is refused", () => {
    run();
    appendFileSync(file(1), "x");
    expect(() => run()).toThrow(expect.objectContaining({ name: "IntegrityError" }));
    expect(() => run()).toThrow(/runtime\/llama\/cpu\/libllama\.so does not match its sha256/);
  });

  test("content rewritten at the same size with the old mtime put back is refused (ctime moved)", () => {
    run();
    const { atime, mtime, size } = statSync(file(0));
    const forged = Buffer.alloc(size, "z");
    writeFileSync(file(0), forged);
    utimesSync(file(0), atime, mtime);
    expect(statSync(file(0)).size).toBe(size);
    expect(() => run()).toThrow(/libggml\.so does not match its sha256/);
  });

  test("touching a file's mtime hashes it again, and it passes", () => {
    run();
    const then = new Date(Date.now() - 3_600_000);
    utimesSync(file(0), then, then);
    expect(run()).toMatchObject({ hashed: 1 });
    expect(run()).toMatchObject({ hashed: 0 });
  });

  test("a manifest with another sha256 for the file does not reuse the verdict", () => {
    run();
    manifest.files[FILES[0]!] = "0".repeat(64);
    expect(() => run()).toThrow(/libggml\.so does not match its sha256/);
  });

  for (const [what, text] of [
    ["garbage", "\u0000\u0001 not json"],
    ["truncated JSON", `{"format":"${VERDICTS_FORMAT}","verdicts":{`],
    ["another format", JSON.stringify({ format: "infernet-runtime-verdicts/0", verdicts: {} })],
    ["an unknown field", JSON.stringify({ format: VERDICTS_FORMAT, verdicts: {}, trusted: true })],
  ] as const) {
    test(`a corrupted cache file (${what}) is ignored, then replaced`, () => {
      run();
      writeFileSync(cache, text, { mode: 0o600 });
      expect(run()).toMatchObject({ hashed: 2 });
      expect(run()).toMatchObject({ hashed: 0 });
    });
  }

  test("a verdict forged for a changed file is not trusted when the cache is open to others", () => {
    run();
    appendFileSync(file(0), "planted");
    // Whoever wrote this file knew the new key; only its permissions give it away.
    const saved = JSON.parse(readFileSync(cache, "utf8")) as { verdicts: Record<string, { sha256: string }> };
    saved.verdicts[resolve(file(0))] = { ...fileKey(file(0)), sha256: manifest.files[FILES[0]!]! };
    writeFileSync(cache, JSON.stringify({ format: VERDICTS_FORMAT, verdicts: saved.verdicts }));
    chmodSync(cache, 0o644);
    expect(() => run()).toThrow(/libggml\.so does not match its sha256/);
  });

  test("a cache that is a symbolic link is not followed", () => {
    run();
    const elsewhere = join(tmp.path, "elsewhere.json");
    writeFileSync(elsewhere, readFileSync(cache), { mode: 0o600 });
    symlinkSync(elsewhere, `${cache}.link`);
    const verdicts = new Verdicts(`${cache}.link`, { now: later });
    expect(checkPiece(release, PIECE, manifest, verdicts).hashed).toBe(2);
  });

  test.skipIf(process.getuid?.() !== 0)("a cache owned by another user is not trusted", () => {
    run();
    chownSync(cache, 65534, 65534);
    expect(run()).toMatchObject({ hashed: 2 });
  });

  test("a file changed within the racy window is hashed but gets no verdict until the window has passed", () => {
    const changed = [file(0), file(1)].map((f) => lastChangeNs(fileKey(f))).sort((a, b) => Number(a - b));
    const oldest = changed[0]!;
    const newest = changed[1]!;
    expect(run(() => oldest + RACY_WINDOW_NS - 1n)).toMatchObject({ hashed: 2 });
    expect(run(() => oldest + RACY_WINDOW_NS - 1n)).toMatchObject({ hashed: 2 });
    expect(run(() => newest + RACY_WINDOW_NS)).toMatchObject({ hashed: 2 });
    expect(run(() => newest + RACY_WINDOW_NS)).toMatchObject({ hashed: 0 });
  });

  test(`the cache keeps the newest ${MAX_VERDICTS} verdicts`, () => {
    const key = fileKey(file(0));
    const old: Record<string, unknown> = {};
    for (let i = 0; i < MAX_VERDICTS; i++) old[`/old/${i}`] = { ...key, sha256: "a".repeat(64) };
    writeFileSync(cache, JSON.stringify({ format: VERDICTS_FORMAT, verdicts: old }), { mode: 0o600 });
    run();
    const saved = JSON.parse(readFileSync(cache, "utf8")) as { verdicts: Record<string, unknown> };
    const paths = Object.keys(saved.verdicts);
    expect(paths).toHaveLength(MAX_VERDICTS);
    expect(paths).not.toContain("/old/0");
    expect(paths).not.toContain("/old/1");
    expect(paths).toContain(`/old/${MAX_VERDICTS - 1}`);
    expect(paths.slice(-2)).toEqual([resolve(file(0)), resolve(file(1))]);
  });

  test("an unlisted file beside verified ones is still refused", () => {
    run();
    writeFileSync(join(release, RUNTIME_DIR, "llama/cpu/libggml-planted.so"), "x");
    expect(() => run()).toThrow(/runtime\/llama\/cpu\/libggml-planted\.so is not part of this release/);
  });

  test("verdicts live in the release folder when it is writable", () => {
    expect(verdictsPath(release, join(tmp.path, "home"))).toBe(join(release, VERDICTS_FILE));
  });

  // root may write anywhere, so the read-only case can only be seen as another user.
  test.skipIf(process.getuid?.() === 0)("verdicts live in INFERNET_HOME when the release folder is read-only", () => {
    chmodSync(release, 0o555);
    try {
      expect(verdictsPath(release, join(tmp.path, "home"))).toBe(join(tmp.path, "home", VERDICTS_FILE));
    } finally {
      chmodSync(release, 0o755);
    }
  });

  test("a cache that cannot be written only means hashing again", () => {
    const verdicts = new Verdicts(join(tmp.path, "no-such-dir", VERDICTS_FILE), { now: later });
    expect(checkPiece(release, PIECE, manifest, verdicts).hashed).toBe(2);
    verdicts.save();
    expect(verdicts.pending).toBe(2);
  });
});
