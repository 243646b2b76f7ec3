import { randomBytes, randomUUID } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import * as ecc from "@bitcoinerlab/secp256k1";
import { BIP32Factory, type BIP32Interface } from "bip32";
import { payments, type Signer } from "bitcoinjs-lib";
import { errorMessage, InfernetError } from "../../util/errors.ts";
import { bitcoinNetwork, type ChainNetwork, coinType } from "../chain/network.ts";

/**
 * The wallet's key: one BIP32 seed in `wallet.key`, apart from the libp2p identity (a node's peer id
 * says nothing about its coins, and rotating one never touches the other). The seed is 32 random
 * bytes used directly as the BIP32 master seed (no BIP39 mnemonic: nothing here is ever written down
 * by hand). The file is created 0600 and refused when group or others can read it. Neither the seed
 * nor a private key is ever logged or serialised: key objects keep them in private fields and print
 * only public data from `toJSON`, `toString` and inspect.
 *
 * Paths (BIP32 notation, ' = hardened; coin = 0 on mainnet, 1 elsewhere, per BIP44):
 * - receive m/84'/coin'/0'/0/i and change m/84'/coin'/0'/1/i: BIP84 P2WPKH, account 0;
 * - channel keys m/1017'/coin'/0'/0/i: LND's keychain layout (BIP43 purpose 1017', key family 0 =
 *   multisig funding keys), so channel keys never collide with addresses the wallet hands out.
 */

export const WALLET_KEY_FILE = "wallet.key";
/** Seed length written by `create`: 256 bits, as BIP32 recommends. */
export const WALLET_SEED_BYTES = 32;
/** BIP32 allows seeds of 128 to 512 bits. */
export const MIN_SEED_BYTES = 16;
export const MAX_SEED_BYTES = 64;
/** Largest key file read: hex of a 64-byte seed and a newline, with room; anything bigger is not ours. */
export const MAX_WALLET_KEY_FILE_BYTES = 1024;

export const BIP84_PURPOSE = 84;
/** LND's keychain purpose (keychain/derivation.go: BIP0043Purpose = 1017). */
export const CHANNEL_KEY_PURPOSE = 1017;
/** Highest non-hardened child index (BIP32: indexes from 2^31 are hardened). */
export const MAX_CHILD_INDEX = 0x7fff_ffff;

/** The key file is missing, unreadable, not private, or not a key. */
export class WalletKeyError extends InfernetError {}

let bip32Factory: ReturnType<typeof BIP32Factory> | undefined;
/** The BIP32 factory, made on first use (making one self-tests the curve code: ~70 ms a node start need not pay). */
function bip32(): ReturnType<typeof BIP32Factory> {
  bip32Factory ??= BIP32Factory(ecc);
  return bip32Factory;
}
const INSPECT = Symbol.for("nodejs.util.inspect.custom");

export type KeyBranch = "receive" | "change" | "channel";

/** A derived key: signs for bitcoinjs `Psbt.signInput`, prints only its path and public key. */
export class KeySigner implements Signer {
  readonly publicKey: Uint8Array;
  readonly path: string;
  readonly branch: KeyBranch;
  readonly index: number;
  /** P2WPKH address and scriptPubKey of this key (meaningful for receive and change keys). */
  readonly address: string;
  readonly script: Uint8Array;
  readonly #node: BIP32Interface;

  constructor(node: BIP32Interface, path: string, branch: KeyBranch, index: number, network: ChainNetwork) {
    this.#node = node;
    this.publicKey = node.publicKey;
    this.path = path;
    this.branch = branch;
    this.index = index;
    const pay = payments.p2wpkh({ pubkey: node.publicKey, network: bitcoinNetwork(network) });
    this.address = pay.address as string;
    this.script = pay.output as Uint8Array;
  }

  /** ECDSA over a 32-byte hash, low-S, and low-R ground as Bitcoin Core does (a 71-byte signature at most). */
  sign(hash: Uint8Array, lowR = true): Uint8Array {
    return this.#node.sign(hash, lowR);
  }

  toJSON(): { path: string; publicKey: string } {
    return { path: this.path, publicKey: Buffer.from(this.publicKey).toString("hex") };
  }

  toString(): string {
    return `KeySigner(${this.path} ${Buffer.from(this.publicKey).toString("hex")})`;
  }

  [INSPECT](): string {
    return this.toString();
  }
}

export class WalletKey {
  readonly network: ChainNetwork;
  readonly #root: BIP32Interface;

  private constructor(root: BIP32Interface, network: ChainNetwork) {
    this.#root = root;
    this.network = network;
  }

  /** A key from seed bytes (16 to 64, BIP32). The bytes are copied; the caller may wipe its own. */
  static fromSeed(seed: Uint8Array, network: ChainNetwork): WalletKey {
    if (seed.byteLength < MIN_SEED_BYTES || seed.byteLength > MAX_SEED_BYTES) {
      throw new WalletKeyError(`a wallet seed is ${MIN_SEED_BYTES} to ${MAX_SEED_BYTES} bytes, not ${seed.byteLength}`);
    }
    return new WalletKey(bip32().fromSeed(Buffer.from(seed), bitcoinNetwork(network)), network);
  }

  /**
   * Writes a new random seed to `path` (mode 0600, durably) and returns its key. Never replaces an
   * existing file: losing a seed loses the coins it holds.
   */
  static create(path: string, network: ChainNetwork): WalletKey {
    const seed = randomBytes(WALLET_SEED_BYTES);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // Written whole to a private temporary file, flushed, then hard-linked into place: link() fails if
    // the name exists, so an existing key is never overwritten, and no reader sees half a seed.
    const temp = `${path}.${process.pid}.${randomUUID()}.tmp`;
    try {
      const fd = openSync(temp, "wx", 0o600);
      try {
        writeSync(fd, `${seed.toString("hex")}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      linkSync(temp, path);
    } catch (err) {
      const exists = (err as NodeJS.ErrnoException).code === "EEXIST";
      throw new WalletKeyError(
        exists ? `a wallet key already exists at ${path}` : `cannot write the wallet key ${path}: ${errorMessage(err)}`,
        { hint: exists ? "load it instead; never replace a wallet key that may hold coins" : undefined, cause: err },
      );
    } finally {
      try {
        unlinkSync(temp);
      } catch {
        // Never created.
      }
    }
    return WalletKey.fromSeed(seed, network);
  }

  /** Reads `path`: 64 to 128 hex characters (a trailing newline allowed) or 16 to 64 raw bytes. */
  static load(path: string, network: ChainNetwork): WalletKey {
    let bytes: Buffer;
    try {
      const stat = statSync(path);
      if (!stat.isFile()) throw new Error("not a regular file");
      if (process.platform !== "win32") {
        if ((stat.mode & 0o077) !== 0) {
          throw new WalletKeyError(
            `the wallet key ${path} can be read by other users (mode ${(stat.mode & 0o777).toString(8)})`,
            { hint: `chmod 600 ${path}` },
          );
        }
        const uid = process.getuid?.();
        if (uid !== undefined && stat.uid !== uid) {
          throw new WalletKeyError(`the wallet key ${path} belongs to another user`, { hint: `chown it to yourself` });
        }
      }
      if (stat.size > MAX_WALLET_KEY_FILE_BYTES) throw new Error(`larger than ${MAX_WALLET_KEY_FILE_BYTES} bytes`);
      bytes = readFileSync(path);
    } catch (err) {
      if (err instanceof WalletKeyError) throw err;
      throw new WalletKeyError(`cannot read the wallet key ${path}: ${errorMessage(err)}`, { cause: err });
    }
    const text = bytes.toString("latin1").trim();
    const seed = /^(?:[0-9a-fA-F]{2}){16,64}$/.test(text) ? Buffer.from(text, "hex") : bytes;
    if (seed.byteLength < MIN_SEED_BYTES || seed.byteLength > MAX_SEED_BYTES) {
      throw new WalletKeyError(
        `the wallet key ${path} is neither a hex seed nor ${MIN_SEED_BYTES}-${MAX_SEED_BYTES} raw bytes`,
      );
    }
    return WalletKey.fromSeed(seed, network);
  }

  /** The key at `path`, created there first if there is none. */
  static loadOrCreate(path: string, network: ChainNetwork): { key: WalletKey; created: boolean } {
    try {
      statSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT")
        return { key: WalletKey.create(path, network), created: true };
    }
    return { key: WalletKey.load(path, network), created: false };
  }

  /** The master key's BIP32 fingerprint (hash160 of its public key, 4 bytes): safe to show. */
  get fingerprint(): string {
    return Buffer.from(this.#root.fingerprint).toString("hex");
  }

  /** BIP84 receive key i: m/84'/coin'/0'/0/i. */
  receive(index: number): KeySigner {
    return this.#derive("receive", `m/${BIP84_PURPOSE}'/${coinType(this.network)}'/0'/0`, index);
  }

  /** BIP84 change key i: m/84'/coin'/0'/1/i. */
  change(index: number): KeySigner {
    return this.#derive("change", `m/${BIP84_PURPOSE}'/${coinType(this.network)}'/0'/1`, index);
  }

  /** Channel funding key i: m/1017'/coin'/0'/0/i (LND's key family 0). */
  channelKey(index: number): KeySigner {
    return this.#derive("channel", `m/${CHANNEL_KEY_PURPOSE}'/${coinType(this.network)}'/0'/0`, index);
  }

  toJSON(): { network: ChainNetwork; fingerprint: string } {
    return { network: this.network, fingerprint: this.fingerprint };
  }

  toString(): string {
    return `WalletKey(${this.network} ${this.fingerprint})`;
  }

  [INSPECT](): string {
    return this.toString();
  }

  #derive(branch: KeyBranch, base: string, index: number): KeySigner {
    if (!Number.isInteger(index) || index < 0 || index > MAX_CHILD_INDEX) {
      throw new WalletKeyError(`${index} is not a key index (0 to ${MAX_CHILD_INDEX})`);
    }
    const path = `${base}/${index}`;
    return new KeySigner(this.#root.derivePath(path), path, branch, index, this.network);
  }
}
