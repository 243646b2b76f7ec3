#!/usr/bin/env bun
/**
 * Builds a release and lays it out as the download server serves it (src/release/layout.ts):
 *   dist/release/latest                                   the version, one line
 *   dist/release/<version>/infernet-<v>-<os>-<arch>.tar.gz the release folder, as one top folder
 *   dist/release/<version>/SHA256SUMS                     "<sha256>  <archive>" per target built so far
 * A static HTTP server over dist/release is then a download server for install.sh and `infernet update`.
 *
 * Usage: bun scripts/release.ts [--target linux-x64] [--llama all|cpu|<pkg>,...] [--out dist]
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { archiveName, LATEST_FILE, SUMS_FILE } from "../src/release/layout.ts";
import { sha256File } from "../src/release/runtime.ts";
import { VERSION } from "../src/version.ts";
import { BuildError, type BuildOptions, build } from "./build.ts";

export interface ReleaseResult {
  /** dist/release: serve this folder. */
  root: string;
  archive: string;
  sha256: string;
  /** The release folder the archive was made from. */
  dir: string;
}

export async function release(options: BuildOptions = {}): Promise<ReleaseResult> {
  const built = await build(options);
  const root = join(dirname(built.dir), "release");
  const versionDir = join(root, VERSION);
  mkdirSync(versionDir, { recursive: true });
  const name = archiveName(VERSION, built.target.os, built.target.arch);
  const archive = join(versionDir, name);
  rmSync(archive, { force: true });
  // Owners and order fixed, so the archive does not depend on who built it.
  const tar = Bun.spawnSync(
    [
      "tar",
      "--sort=name",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "-C",
      dirname(built.dir),
      "-czf",
      archive,
      basename(built.dir),
    ],
    { stderr: "pipe" },
  );
  if (tar.exitCode !== 0) throw new BuildError(`tar failed: ${tar.stderr.toString().trim()}`);
  const sha256 = sha256File(archive);

  // One line per archive: a second target's release keeps the first's line.
  const sumsPath = join(versionDir, SUMS_FILE);
  const lines = existsSync(sumsPath)
    ? readFileSync(sumsPath, "utf8")
        .split("\n")
        .filter((line) => line.trim() !== "" && !line.endsWith(`  ${name}`))
    : [];
  lines.push(`${sha256}  ${name}`);
  writeFileSync(sumsPath, `${lines.sort((a, b) => a.slice(66).localeCompare(b.slice(66))).join("\n")}\n`);
  writeFileSync(join(root, LATEST_FILE), `${VERSION}\n`);
  return { root, archive, sha256, dir: built.dir };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { target: { type: "string" }, llama: { type: "string" }, out: { type: "string" } },
  });
  try {
    const result = await release(values);
    const mb = (Bun.file(result.archive).size / 1e6).toFixed(1);
    process.stdout.write(`${result.archive} (${mb} MB)\n${result.sha256}\n`);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
