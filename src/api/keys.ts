import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { ConfigError, UsageError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/files.ts";

/**
 * API keys for the gateway: `INFERNET_HOME/api-keys.json`, mode 0600, holding each key's id, name,
 * limits and the sha256 of its secret (never the secret: it is shown once, when created, as GitHub
 * and OpenAI do). A secret reads `inf_<id>_<random>`, so a request names its key without a scan and
 * the hash comparison is constant-time.
 */

export const API_KEYS_FILE = "api-keys.json";
/** Largest keys file read. */
export const MAX_KEYS_FILE_BYTES = 1_000_000;
/** Most keys one node holds. */
export const MAX_API_KEYS = 1_000;
/** A new key's request rate unless told, per minute. */
export const DEFAULT_REQUESTS_PER_MINUTE = 60;
/** A new key's concurrent generations unless told. */
export const DEFAULT_KEY_CONCURRENCY = 4;
/** Highest rate and concurrency a key can be given. */
export const MAX_REQUESTS_PER_MINUTE = 100_000;
export const MAX_KEY_CONCURRENCY = 1_024;
/** Largest spend budget, satoshis (21 million bitcoin). */
export const MAX_BUDGET_SATS = 2_100_000_000_000_000;
/** Random bytes in a secret. */
const SECRET_BYTES = 32;

const keySchema = z.object({
  id: z.string().regex(/^[0-9a-f]{8}$/),
  name: z.string().max(128),
  createdAt: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  requestsPerMinute: z.number().int().min(1).max(MAX_REQUESTS_PER_MINUTE),
  concurrency: z.number().int().min(1).max(MAX_KEY_CONCURRENCY),
  /** Most this key may spend, satoshis; absent: no limit. */
  budgetSats: z.number().int().min(0).max(MAX_BUDGET_SATS).optional(),
});

const fileSchema = z.object({ version: z.literal(1), keys: z.array(keySchema).max(MAX_API_KEYS) });

export type ApiKey = z.infer<typeof keySchema>;

export interface NewKeyOptions {
  name?: string;
  requestsPerMinute?: number;
  concurrency?: number;
  budgetSats?: number;
}

export function keysPath(home: string): string {
  return join(home, API_KEYS_FILE);
}

/** The keys in the file (none when there is no file). A file others can read is refused, like ssh keys. */
export function readKeys(home: string): ApiKey[] {
  const path = keysPath(home);
  if (!existsSync(path)) return [];
  const stat = statSync(path);
  if ((stat.mode & 0o077) !== 0) {
    throw new ConfigError(`${path} can be read by other users (mode ${(stat.mode & 0o777).toString(8)})`, {
      hint: `run: chmod 600 ${path}`,
    });
  }
  if (stat.size > MAX_KEYS_FILE_BYTES) throw new ConfigError(`${path} is over ${MAX_KEYS_FILE_BYTES} bytes`);
  let parsed: z.ZodSafeParseResult<z.infer<typeof fileSchema>>;
  try {
    parsed = fileSchema.safeParse(JSON.parse(readFileSync(path, "utf8")));
  } catch (cause) {
    throw new ConfigError(`${path} is not valid JSON`, {
      hint: "restore it, or move it away and create keys again",
      cause,
    });
  }
  if (!parsed.success) {
    throw new ConfigError(`${path} is not an Infernet API keys file: ${parsed.error.issues[0]?.message}`, {
      hint: "restore it, or move it away and create keys again",
    });
  }
  return parsed.data.keys;
}

function writeKeys(home: string, keys: ApiKey[]): void {
  writeFileAtomic(keysPath(home), `${JSON.stringify({ version: 1, keys }, null, 2)}\n`, 0o600);
}

/** Creates a key; its secret is returned here and nowhere else. */
export function createKey(
  home: string,
  options: NewKeyOptions = {},
  now = Date.now(),
): { key: ApiKey; secret: string } {
  const keys = readKeys(home);
  if (keys.length >= MAX_API_KEYS) throw new UsageError(`api-key: this node already has ${MAX_API_KEYS} keys`);
  let id: string;
  do id = randomBytes(4).toString("hex");
  while (keys.some((k) => k.id === id));
  const secret = `inf_${id}_${randomBytes(SECRET_BYTES).toString("base64url")}`;
  const key = keySchema.parse({
    id,
    name: options.name ?? "",
    createdAt: now,
    sha256: sha256(secret),
    requestsPerMinute: options.requestsPerMinute ?? DEFAULT_REQUESTS_PER_MINUTE,
    concurrency: options.concurrency ?? DEFAULT_KEY_CONCURRENCY,
    ...(options.budgetSats !== undefined ? { budgetSats: options.budgetSats } : {}),
  });
  writeKeys(home, [...keys, key]);
  return { key, secret };
}

/** Removes a key by id (or its name when unique); the removed key, or undefined. */
export function revokeKey(home: string, idOrName: string): ApiKey | undefined {
  const keys = readKeys(home);
  const byId = keys.find((k) => k.id === idOrName);
  const byName = keys.filter((k) => k.name === idOrName);
  if (!byId && byName.length > 1) {
    throw new UsageError(`api-key revoke: ${byName.length} keys are named "${idOrName}"`, { hint: "give its id" });
  }
  const found = byId ?? byName[0];
  if (!found) return undefined;
  writeKeys(
    home,
    keys.filter((k) => k !== found),
  );
  return found;
}

/** The key a secret belongs to, or undefined (unknown, revoked or wrong). */
export function matchKey(keys: readonly ApiKey[], secret: string): ApiKey | undefined {
  const m = /^inf_([0-9a-f]{8})_[A-Za-z0-9_-]{20,100}$/.exec(secret);
  if (!m) return undefined;
  const key = keys.find((k) => k.id === m[1]);
  if (!key) return undefined;
  const given = Buffer.from(sha256(secret), "hex");
  return timingSafeEqual(given, Buffer.from(key.sha256, "hex")) ? key : undefined;
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
