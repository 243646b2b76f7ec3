import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { ConfigError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/files.ts";
import { logger } from "../util/logger.ts";

const log = logger("node:identity");

/** The node's Ed25519 key, libp2p protobuf encoding. Its peer id is this node's name on the network. */
export const IDENTITY_FILE = "identity.key";
/** Largest identity file we will read (an Ed25519 key is 68 bytes). */
const MAX_IDENTITY_BYTES = 4096;

/**
 * Loads the node's persistent identity from `INFERNET_HOME/identity.key`, creating it (mode 0600) on
 * first use. A key file that others can read is refused, as ssh does: the key is the node's money.
 */
export async function loadOrCreateIdentity(home: string): Promise<PrivateKey> {
  const path = join(home, IDENTITY_FILE);
  if (existsSync(path)) return readIdentity(path);
  const key = await generateKeyPair("Ed25519");
  writeFileAtomic(path, privateKeyToProtobuf(key), 0o600);
  log.info("created node identity", { path });
  return key;
}

function readIdentity(path: string): PrivateKey {
  const stat = statSync(path);
  if ((stat.mode & 0o077) !== 0) {
    throw new ConfigError(`${path} can be read by other users (mode ${(stat.mode & 0o777).toString(8)})`, {
      hint: `run: chmod 600 ${path}`,
    });
  }
  if (stat.size > MAX_IDENTITY_BYTES) throw new ConfigError(`${path} is too large to be a node key`);
  try {
    const key = privateKeyFromProtobuf(readFileSync(path));
    if (key.type !== "Ed25519") throw new Error(`key type ${key.type}`);
    return key;
  } catch (cause) {
    throw new ConfigError(`${path} is not an Ed25519 node key`, {
      hint: "restore it from a backup, or move it away to create a new identity (a new peer id)",
      cause,
    });
  }
}
