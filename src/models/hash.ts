import { open } from "node:fs/promises";
import { throwIfAborted } from "../util/abort.ts";

/** Read size for hashing: large enough to keep the hasher busy, small enough to stay cache-friendly. */
const HASH_CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * The lowercase hex sha256 of a file, read in chunks so a multi-gigabyte model never sits in memory.
 * `onBytes` is called with the running count of bytes hashed.
 */
export async function sha256File(
  path: string,
  options: { signal?: AbortSignal; onBytes?: (hashed: number) => void } = {},
): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  const buffer = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
  await using handle = await open(path, "r");
  let position = 0;
  for (;;) {
    throwIfAborted(options.signal);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) break;
    hasher.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
    options.onBytes?.(position);
  }
  return hasher.digest("hex");
}
