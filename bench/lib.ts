import { cpus } from "node:os";
import { join, resolve } from "node:path";

/** Shared helpers for bench scripts: they print figures; nothing here asserts on time. */
export const ROOT = resolve(import.meta.dir, "..");
export const BUN = join(ROOT, "node_modules/.bin/bun");
export const CLI = join(ROOT, "src/index.ts");
export const MIRROR = resolve(ROOT, "../shared/models");

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function machine(): string {
  return `${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} cores, Bun ${Bun.version}`;
}

export interface Spawned {
  stdout: string;
  stderr: string;
  code: number;
  wallMs: number;
  maxRssBytes: number;
}

/** Runs a command to completion, timing it and reading its peak resident memory. */
export async function spawnTimed(cmd: string[], env: Record<string, string> = {}): Promise<Spawned> {
  const start = performance.now();
  const proc = Bun.spawn(cmd, { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  const wallMs = performance.now() - start;
  const usage = proc.resourceUsage();
  return { stdout, stderr, code, wallMs, maxRssBytes: Number(usage?.maxRSS ?? 0) };
}
