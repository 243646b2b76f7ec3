import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/files.ts";
import { logger } from "../util/logger.ts";
import { type KeyPair, keyPairOf, newKeyPair, X25519_KEY_BYTES } from "./envelope.ts";

const log = logger("crypto:key");

/**
 * The provider's X25519 key for end-to-end encrypted payloads (envelope.ts), apart from its libp2p
 * identity and its wallet: `INFERNET_HOME/encryption.key`, the 32-byte secret as raw bytes, mode
 * 0600, made on first use. A file others can read is refused, as ssh refuses a key.
 */
export const ENCRYPTION_KEY_FILE = "encryption.key";

export function loadOrCreateEncryptionKey(home: string): KeyPair {
  const path = join(home, ENCRYPTION_KEY_FILE);
  if (!existsSync(path)) {
    const pair = newKeyPair();
    writeFileAtomic(path, pair.secretKey, 0o600);
    log.info("created the encryption key", { path });
    return pair;
  }
  const stat = statSync(path);
  if ((stat.mode & 0o077) !== 0) {
    throw new ConfigError(`${path} can be read by other users (mode ${(stat.mode & 0o777).toString(8)})`, {
      hint: `run: chmod 600 ${path}`,
    });
  }
  if (stat.size !== X25519_KEY_BYTES) {
    throw new ConfigError(`${path} is not a ${X25519_KEY_BYTES}-byte X25519 key (${stat.size} bytes)`, {
      hint: "move it away to make a new one (clients read the new public key from the next record)",
    });
  }
  return keyPairOf(new Uint8Array(readFileSync(path)));
}
