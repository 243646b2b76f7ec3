import { describe, expect, test } from "bun:test";
import {
  type Binding,
  DecryptionError,
  keyPairOf,
  newKeyPair,
  openFrame,
  openRequest,
  sealFrame,
  sealRequest,
} from "./envelope.ts";

const BINDING: Binding = { requestId: "0123456789abcdef0123456789abcdef", modelSha256: "ab".repeat(32) };
const PROMPT = new TextEncoder().encode("Once upon a time, a secret prompt");

function flipped(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  out[bit >> 3] = (out[bit >> 3] as number) ^ (1 << (bit & 7));
  return out;
}

describe("end-to-end envelopes", () => {
  test("the provider opens what was sealed for it; the response frames open for the client, in order", () => {
    const provider = newKeyPair();
    const { sealed, session: client } = sealRequest(provider.publicKey, PROMPT, BINDING);
    expect(Buffer.from(sealed.ciphertext).includes(Buffer.from("secret"))).toBe(false);
    const { plaintext, session } = openRequest(provider, sealed, BINDING);
    expect(new TextDecoder().decode(plaintext)).toBe("Once upon a time, a secret prompt");
    const frames = ["one", "two", "done"].map((t, i, all) =>
      sealFrame(session, i, i === all.length - 1, new TextEncoder().encode(t)),
    );
    const opened = frames.map((f, i) => new TextDecoder().decode(openFrame(client, i, i === frames.length - 1, f)));
    expect(opened).toEqual(["one", "two", "done"]);
    // A stored secret key gives the same pair back.
    expect(keyPairOf(provider.secretKey).publicKey).toEqual(provider.publicKey);
  });

  test("a flipped bit anywhere in the request, or another binding, is rejected", () => {
    const provider = newKeyPair();
    const { sealed } = sealRequest(provider.publicKey, PROMPT, BINDING);
    for (const field of ["ephemeral", "nonce", "ciphertext"] as const) {
      for (const bit of [0, 7, sealed[field].byteLength * 8 - 1]) {
        expect(() => openRequest(provider, { ...sealed, [field]: flipped(sealed[field], bit) }, BINDING)).toThrow(
          DecryptionError,
        );
      }
    }
    expect(() => openRequest(provider, sealed, { ...BINDING, requestId: "another" })).toThrow(DecryptionError);
    expect(() => openRequest(provider, sealed, { ...BINDING, modelSha256: "cd".repeat(32) })).toThrow("does not open");
    expect(() => openRequest(provider, { ...sealed, ciphertext: sealed.ciphertext.slice(0, 8) }, BINDING)).toThrow(
      "shorter than its tag",
    );
  });

  test("the wrong provider cannot open a request, nor a client another request's frames", () => {
    const provider = newKeyPair();
    const other = newKeyPair();
    const { sealed } = sealRequest(provider.publicKey, PROMPT, BINDING);
    expect(() => openRequest(other, sealed, BINDING)).toThrow(DecryptionError);
    const a = sealRequest(provider.publicKey, PROMPT, BINDING);
    const b = sealRequest(provider.publicKey, PROMPT, BINDING);
    const { session } = openRequest(provider, a.sealed, BINDING);
    const frame = sealFrame(session, 0, true, PROMPT);
    expect(() => openFrame(b.session, 0, true, frame)).toThrow(DecryptionError);
  });

  test("a response frame moved, replayed elsewhere, flipped, or passed off as the last, is rejected", () => {
    const provider = newKeyPair();
    const { sealed, session: client } = sealRequest(provider.publicKey, PROMPT, BINDING);
    const { session } = openRequest(provider, sealed, BINDING);
    const first = sealFrame(session, 0, false, PROMPT);
    expect(() => openFrame(client, 1, false, first)).toThrow("frame 1 does not open");
    expect(() => openFrame(client, 0, true, first)).toThrow(DecryptionError);
    expect(() => openFrame(client, 0, false, { ...first, ciphertext: flipped(first.ciphertext, 3) })).toThrow(
      DecryptionError,
    );
    expect(() => openFrame(client, 0, false, { ...first, nonce: first.nonce.slice(1) })).toThrow("a nonce is 24 bytes");
  });

  test("keys that are not X25519 keys are refused with what is wrong", () => {
    expect(() => sealRequest(new Uint8Array(31), PROMPT, BINDING)).toThrow("provider key is not 32 bytes");
    const provider = newKeyPair();
    const { sealed } = sealRequest(provider.publicKey, PROMPT, BINDING);
    // The all-zero point gives the all-zero secret: refused, never used as a key.
    expect(() => openRequest(provider, { ...sealed, ephemeral: new Uint8Array(32) }, BINDING)).toThrow(DecryptionError);
  });
});
