import { randomBytes } from "node:crypto";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { InfernetError } from "../util/errors.ts";

/**
 * End-to-end encrypted payloads between a client and the provider that runs them, so a relay or an
 * aggregator in between carries only ciphertext (issue 14, part 1).
 *
 * - The provider has a long-term X25519 key pair; its public key is announced in its signed
 *   capability record, so a client knows it is the provider's.
 * - Each request makes a fresh ephemeral X25519 key pair. ECDH with the provider's key, then
 *   HKDF-SHA256 (salt: both public keys; info: the direction), gives two keys: one for the request,
 *   one for the response frames, so no two requests share a key. As in any one-shot sealed box there
 *   is no forward secrecy against the provider's long-term key: whoever later holds it can open
 *   requests recorded before.
 * - Every message is XChaCha20-Poly1305 with a random 24-byte nonce; the associated data binds the
 *   request id, the model's sha256 and, for a response, the frame's position and whether it is the
 *   last: a frame moved, replayed, dropped at the end, or sent for another request or model fails
 *   to open.
 */

export const X25519_KEY_BYTES = 32;
export const NONCE_BYTES = 24;
/** Poly1305 tag length. */
export const TAG_BYTES = 16;
/** Domain separation for the key derivation (changing it is a new protocol version). */
const INFO_REQUEST = new TextEncoder().encode("infernet/e2e/v1/request");
const INFO_RESPONSE = new TextEncoder().encode("infernet/e2e/v1/response");

/** A message that does not open: tampered, for another request, or for another key. */
export class DecryptionError extends InfernetError {}

export interface KeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

/** What the associated data binds every message of a request to. */
export interface Binding {
  requestId: string;
  modelSha256: string;
}

export interface SealedRequest {
  /** The client's ephemeral public key for this request. */
  ephemeral: Uint8Array;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
}

/** The response key both sides hold once a request is sealed or opened. */
export interface Session {
  responseKey: Uint8Array;
  binding: Binding;
}

export function newKeyPair(): KeyPair {
  const secretKey = x25519.utils.randomSecretKey();
  return { secretKey, publicKey: x25519.getPublicKey(secretKey) };
}

/** The key pair of a stored secret key. */
export function keyPairOf(secretKey: Uint8Array): KeyPair {
  checkKey(secretKey, "secret key");
  return { secretKey, publicKey: x25519.getPublicKey(secretKey) };
}

/** Client: seals `plaintext` for the provider whose public key is `provider`. */
export function sealRequest(
  provider: Uint8Array,
  plaintext: Uint8Array,
  binding: Binding,
): { sealed: SealedRequest; session: Session } {
  checkKey(provider, "provider key");
  const eph = newKeyPair();
  const keys = derive(x25519.getSharedSecret(eph.secretKey, provider), eph.publicKey, provider);
  const nonce = randomBytes(NONCE_BYTES);
  const ciphertext = xchacha20poly1305(keys.request, nonce, requestAd(binding)).encrypt(plaintext);
  return { sealed: { ephemeral: eph.publicKey, nonce, ciphertext }, session: { responseKey: keys.response, binding } };
}

/** Provider: opens a request sealed for `own` key pair; DecryptionError when it does not open. */
export function openRequest(
  own: KeyPair,
  sealed: SealedRequest,
  binding: Binding,
): { plaintext: Uint8Array; session: Session } {
  checkKey(sealed.ephemeral, "ephemeral key");
  checkNonce(sealed.nonce);
  let shared: Uint8Array;
  try {
    shared = x25519.getSharedSecret(own.secretKey, sealed.ephemeral);
  } catch (cause) {
    throw new DecryptionError("the request's ephemeral key is not a usable X25519 key", { cause });
  }
  const keys = derive(shared, sealed.ephemeral, own.publicKey);
  const plaintext = open(keys.request, sealed.nonce, sealed.ciphertext, requestAd(binding), "the request");
  return { plaintext, session: { responseKey: keys.response, binding } };
}

/** A response frame: its nonce and ciphertext. */
export interface SealedFrame {
  nonce: Uint8Array;
  ciphertext: Uint8Array;
}

/** Provider: seals response frame number `index` (from 0); `last` marks the final frame. */
export function sealFrame(session: Session, index: number, last: boolean, plaintext: Uint8Array): SealedFrame {
  const nonce = randomBytes(NONCE_BYTES);
  const ad = frameAd(session.binding, index, last);
  return { nonce, ciphertext: xchacha20poly1305(session.responseKey, nonce, ad).encrypt(plaintext) };
}

/** Client: opens response frame number `index`; DecryptionError when it does not open there. */
export function openFrame(session: Session, index: number, last: boolean, frame: SealedFrame): Uint8Array {
  checkNonce(frame.nonce);
  return open(
    session.responseKey,
    frame.nonce,
    frame.ciphertext,
    frameAd(session.binding, index, last),
    `frame ${index}`,
  );
}

function derive(shared: Uint8Array, ephemeral: Uint8Array, provider: Uint8Array) {
  if (shared.every((b) => b === 0)) throw new DecryptionError("the key agreement gave the all-zero secret");
  const salt = concat(ephemeral, provider);
  return {
    request: hkdf(sha256, shared, salt, INFO_REQUEST, 32),
    response: hkdf(sha256, shared, salt, INFO_RESPONSE, 32),
  };
}

function open(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, ad: Uint8Array, what: string): Uint8Array {
  if (ciphertext.byteLength < TAG_BYTES) throw new DecryptionError(`${what} is shorter than its tag`);
  try {
    return xchacha20poly1305(key, nonce, ad).decrypt(ciphertext);
  } catch (cause) {
    throw new DecryptionError(`${what} does not open: tampered, or sealed for another request or key`, { cause });
  }
}

function requestAd(b: Binding): Uint8Array {
  return new TextEncoder().encode(`request\n${b.requestId}\n${b.modelSha256}`);
}

function frameAd(b: Binding, index: number, last: boolean): Uint8Array {
  if (!Number.isSafeInteger(index) || index < 0) throw new DecryptionError(`frame index ${index} is not a count`);
  return new TextEncoder().encode(`response\n${b.requestId}\n${b.modelSha256}\n${index}\n${last ? "last" : "more"}`);
}

function checkKey(key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array) || key.byteLength !== X25519_KEY_BYTES) {
    throw new DecryptionError(`the ${what} is not ${X25519_KEY_BYTES} bytes`);
  }
}

function checkNonce(nonce: Uint8Array): void {
  if (!(nonce instanceof Uint8Array) || nonce.byteLength !== NONCE_BYTES) {
    throw new DecryptionError(`a nonce is ${NONCE_BYTES} bytes`);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
