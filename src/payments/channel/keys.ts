import * as ecc from "@bitcoinerlab/secp256k1";
import { ECPairFactory, type ECPairInterface } from "ecpair";

/**
 * Channel keys. The channel code never holds private keys itself: it signs through a `Signer` (the
 * bitcoinjs interface an ECPair or a BIP32 node satisfies), and the store keeps public keys only. The
 * wallet owns the keys; `KeyRing` is the small in-memory one the protocol uses when none is given.
 */
export interface Signer {
  /** The 33-byte compressed public key. */
  publicKey: Uint8Array;
  /** A 64-byte compact (r, s) ECDSA signature of the 32-byte `hash`, low S. */
  sign(hash: Uint8Array, lowR?: boolean): Uint8Array;
}

/** Where a channel finds its own key: a fresh one for a new channel, and again by public key later. */
export interface ChannelKeys {
  newKey(): Signer;
  /** The signer for a public key this node made, or undefined. */
  key(publicKey: Uint8Array): Signer | undefined;
}

let pairs: ReturnType<typeof ECPairFactory> | undefined;
/** The ECPair factory, made on first use (making one self-tests the curve code: ~30 ms a node start need not pay). */
export function ecpair(): ReturnType<typeof ECPairFactory> {
  pairs ??= ECPairFactory(ecc);
  return pairs;
}

/** Keys held in memory (lost when the process ends: a real node passes its wallet's `ChannelKeys`). */
export class KeyRing implements ChannelKeys {
  private readonly keys = new Map<string, ECPairInterface>();

  newKey(): Signer {
    const pair = ecpair().makeRandom();
    this.keys.set(Buffer.from(pair.publicKey).toString("hex"), pair);
    return pair;
  }

  key(publicKey: Uint8Array): Signer | undefined {
    return this.keys.get(Buffer.from(publicKey).toString("hex"));
  }
}
