import { homedir } from "node:os";
import { join, resolve } from "node:path";

/**
 * Raw environment access, kept free of the settings schema so the entry point can read it without
 * loading anything else. Only src/config reads `process.env`.
 */
export function environment(): Record<string, string | undefined> {
  return process.env;
}

/** Resolves the home directory from the environment without creating anything. */
export function resolveHome(env: Record<string, string | undefined> = process.env): string {
  const raw = env.INFERNET_HOME?.trim();
  return resolve(raw ? raw : join(homedir(), ".infernet"));
}
