import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { modelFile } from "../models/catalog.ts";
import { throwIfAborted } from "../util/abort.ts";
import { errorMessage, FileNotFoundError } from "../util/errors.ts";
import type { SubmitSettings } from "./job-file.ts";

/**
 * The default idempotency key of a submission: a sha256 over the model's sha256, the input's
 * CONTENT (not its path or mtime) and the options that change the work or its terms. Re-running the
 * same `infernet submit` after a crash therefore names the same job, and the aggregator hands that
 * job back instead of charging for it twice; changing a byte of input, the shard size, the
 * redundancy, the token budget or the price makes a new job. The deadline, the aggregator and the
 * output path are left out: they do not change what is computed.
 */

/** Bytes hashed per read, so a large input is never held whole. */
const HASH_CHUNK_BYTES = 4 * 1024 * 1024;
/** Prefix of derived keys (a user's own --key is used as given). */
export const DERIVED_KEY_PREFIX = "sha256:";

export async function defaultIdempotencyKey(settings: SubmitSettings, signal?: AbortSignal): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  const options = {
    v: 1,
    model: modelFile(settings.model).sha256,
    kind: settings.input.kind,
    shardSize: settings.shardSize ?? null,
    shardCount: settings.shardCount ?? null,
    redundancy: settings.redundancy ?? null,
    ...(settings.minVerification !== undefined ? { minVerification: settings.minVerification } : {}),
    maxTokens: settings.maxTokens ?? null,
    maxPriceMsat: settings.maxPriceMsat,
  };
  hasher.update(`${JSON.stringify(options)}\n`);
  await hashInput(hasher, settings.input.path, signal);
  return `${DERIVED_KEY_PREFIX}${hasher.digest("hex")}`;
}

/** A file's bytes; a folder's regular files in name order, each as its name, its length and its bytes. */
async function hashInput(hasher: Bun.CryptoHasher, path: string, signal?: AbortSignal): Promise<void> {
  const info = await stat(path).catch((cause: unknown) => {
    throw new FileNotFoundError(`input ${path} does not exist or cannot be read`, { cause });
  });
  if (!info.isDirectory()) {
    await hashFile(hasher, path, signal);
    return;
  }
  const names = (await readdir(path)).sort();
  for (const name of names) {
    const file = join(path, name);
    const entry = await stat(file);
    if (!entry.isFile()) continue;
    hasher.update(`${name.length}:${name}:${entry.size}:`);
    await hashFile(hasher, file, signal);
  }
}

async function hashFile(hasher: Bun.CryptoHasher, path: string, signal?: AbortSignal): Promise<void> {
  const file = Bun.file(path);
  try {
    for (let at = 0; at < file.size; at += HASH_CHUNK_BYTES) {
      throwIfAborted(signal);
      hasher.update(new Uint8Array(await file.slice(at, at + HASH_CHUNK_BYTES).arrayBuffer()));
    }
  } catch (cause) {
    if (signal?.aborted) throw cause;
    throw new FileNotFoundError(`cannot read ${path}: ${errorMessage(cause)}`, { cause });
  }
}
