import { cpSync, existsSync, mkdirSync, readdirSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Subprocess } from "bun";
import { BINARY_PATH } from "../../src/release/layout.ts";
import type { CliResult } from "./cli.ts";
import { SHARED_MODELS } from "./paths.ts";

/** Programs the compiled binary must run without: none of them may be on its PATH. */
const RUNTIMES = new Set(["node", "nodejs", "bun", "bunx", "npm", "npx", "corepack", "deno"]);

/**
 * A PATH folder holding links to everything in /usr/bin and /bin except JavaScript runtimes: this
 * machine has node in /usr/bin, so PATH=/usr/bin:/bin alone would not prove the binary needs none.
 */
export function pathWithoutRuntimes(dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const from of ["/usr/bin", "/bin"]) {
    if (!existsSync(from)) continue;
    for (const name of readdirSync(from)) {
      if (RUNTIMES.has(name) || existsSync(join(dir, name))) continue;
      symlinkSync(join(from, name), join(dir, name));
    }
  }
  return dir;
}

/** A copy of a release folder at `to`; returns its binary. */
export function copyRelease(releaseDir: string, to: string): string {
  cpSync(releaseDir, to, { recursive: true });
  return join(to, BINARY_PATH);
}

export interface BinaryEnv {
  /** INFERNET_HOME (and HOME) of the run. */
  home: string;
  /** The PATH it gets (see pathWithoutRuntimes). */
  path: string;
  env?: Record<string, string>;
}

/** Runs a compiled binary with nothing from this process's environment: only what it is given here. */
export function spawnBinary(binary: string, args: string[], options: BinaryEnv) {
  mkdirSync(options.home, { recursive: true });
  return Bun.spawn([binary, ...args], {
    cwd: dirname(dirname(binary)),
    env: {
      HOME: options.home,
      PATH: options.path,
      INFERNET_HOME: options.home,
      INFERNET_MODEL_MIRROR: SHARED_MODELS,
      INFERNET_LOG: "info",
      INFERNET_MDNS: "false",
      ...options.env,
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
}

export async function runBinary(binary: string, args: string[], options: BinaryEnv): Promise<CliResult> {
  const proc = spawnBinary(binary, args, options);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** Reads a child's stdout up to its first newline (`infernet start --json` prints its status there). */
export async function firstLine(proc: Subprocess<"ignore", "pipe", "pipe">): Promise<string> {
  const reader = proc.stdout.getReader();
  let text = "";
  try {
    while (!text.includes("\n")) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error(`exited before printing its status: ${text}`);
      text += new TextDecoder().decode(chunk.value);
    }
  } finally {
    reader.releaseLock();
  }
  return text.slice(0, text.indexOf("\n"));
}
