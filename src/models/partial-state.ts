import { existsSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { z } from "zod";
import { logger } from "../util/logger.ts";

const log = logger("models:partial");

/** A state file is a few hundred bytes; anything much larger is not ours. */
const MAX_STATE_BYTES = 64 * 1024;

const PartSchema = z.object({
  /** First byte of the part in the file. */
  start: z.number().int().nonnegative(),
  /** One past the last byte. */
  end: z.number().int().positive(),
  /** Bytes of the part already written, counted from `start`. */
  done: z.number().int().nonnegative(),
});

const StateSchema = z.object({
  version: z.literal(1),
  sha256: z.string(),
  size: z.number().int().positive(),
  parts: z.array(PartSchema).min(1),
});

export type Part = z.infer<typeof PartSchema>;
export type PartialState = z.infer<typeof StateSchema>;

/** Where the bytes of an unfinished download live, and the small JSON that says which ones are valid. */
export function partialPaths(dest: string): { partial: string; state: string } {
  return { partial: `${dest}.partial`, state: `${dest}.partial.json` };
}

/** A fresh state: the whole file as one part, nothing done. */
export function freshState(sha256: string, size: number): PartialState {
  return { version: 1, sha256, size, parts: [{ start: 0, end: size, done: 0 }] };
}

/** Splits a fresh download into `count` contiguous parts of near-equal size. */
export function splitParts(size: number, count: number): Part[] {
  const n = Math.max(1, Math.min(count, size));
  const step = Math.ceil(size / n);
  const parts: Part[] = [];
  for (let start = 0; start < size; start += step) parts.push({ start, end: Math.min(size, start + step), done: 0 });
  return parts;
}

export function bytesDone(state: PartialState): number {
  return state.parts.reduce((sum, p) => sum + p.done, 0);
}

/**
 * Loads the state of an earlier, interrupted download of the same file (same sha256 and size), or
 * undefined when there is none or it cannot be trusted; then the partial file is worthless.
 */
export function loadState(dest: string, sha256: string, size: number): PartialState | undefined {
  const { partial, state } = partialPaths(dest);
  if (!existsSync(partial) || !existsSync(state)) return undefined;
  try {
    if (statSync(state).size > MAX_STATE_BYTES) return undefined;
    const parsed = StateSchema.safeParse(JSON.parse(readFileSync(state, "utf8")));
    if (!parsed.success) return undefined;
    const s = parsed.data;
    if (s.sha256 !== sha256 || s.size !== size || !consistent(s)) return undefined;
    // Bytes the state claims must actually be in the file.
    const needed = Math.max(...s.parts.map((p) => p.start + p.done));
    if (statSync(partial).size < needed) return undefined;
    return s;
  } catch (err) {
    log.warn("unreadable partial state", { state, err });
    return undefined;
  }
}

function consistent(s: PartialState): boolean {
  let at = 0;
  for (const p of s.parts) {
    if (p.start !== at || p.end <= p.start || p.done > p.end - p.start) return false;
    at = p.end;
  }
  return at === s.size;
}

/** Writes the state atomically (temp file + rename), so a crash never leaves half a JSON. */
export function saveState(dest: string, s: PartialState): void {
  const { state } = partialPaths(dest);
  const tmp = `${state}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(s));
  renameSync(tmp, state);
}

/** Deletes the partial file and its state. */
export function discardPartial(dest: string): void {
  const { partial, state } = partialPaths(dest);
  for (const p of [partial, state]) {
    try {
      unlinkSync(p);
    } catch {
      // Not there.
    }
  }
}

export function removeState(dest: string): void {
  try {
    unlinkSync(partialPaths(dest).state);
  } catch {
    // Not there.
  }
}
