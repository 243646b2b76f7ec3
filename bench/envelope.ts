/**
 * End-to-end envelope cost (src/crypto/envelope.ts): sealing and opening 1 MB payloads with
 * XChaCha20-Poly1305 (@noble/ciphers, pure JS) after one X25519 agreement each, against hashing
 * the same bytes with sha256 (native; what the aggregator already does to every result), in this
 * process.
 *
 * Usage: bun bench/envelope.ts [megabytes=64]
 */
import { createHash, randomBytes } from "node:crypto";
import { newKeyPair, openFrame, openRequest, sealFrame, sealRequest } from "../src/crypto/envelope.ts";
import { machine, median } from "./lib.ts";

const total = Number(process.argv[2] ?? 64);
const MB = 1024 * 1024;
const payload = randomBytes(MB);
const binding = { requestId: "bench", modelSha256: "ab".repeat(32) };
const provider = newKeyPair();

function timed(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

console.log(`bench/envelope.ts: ${total} x 1 MB, ${machine()}`);
// Warm-up (JIT).
for (let i = 0; i < 4; i++) openRequest(provider, sealRequest(provider.publicKey, payload, binding).sealed, binding);

const hash: number[] = [];
const seal: number[] = [];
const open: number[] = [];
const frames: number[] = [];
for (let i = 0; i < total; i++) {
  hash.push(timed(() => createHash("sha256").update(payload).digest()));
  let sealed: ReturnType<typeof sealRequest> | undefined;
  seal.push(timed(() => (sealed = sealRequest(provider.publicKey, payload, binding))));
  let session: ReturnType<typeof openRequest>["session"] | undefined;
  open.push(timed(() => (session = openRequest(provider, sealed?.sealed as never, binding).session)));
  const s = session as NonNullable<typeof session>;
  frames.push(timed(() => openFrame(sealed?.session as never, 0, true, sealFrame(s, 0, true, payload))));
}
const mbps = (ms: number) => (1_000 / ms).toFixed(0);
console.log(`sha256 of 1 MB (baseline): ${median(hash).toFixed(2)} ms (${mbps(median(hash))} MB/s)`);
console.log(
  `seal request (X25519 + HKDF + XChaCha20-Poly1305): ${median(seal).toFixed(2)} ms/MB (${mbps(median(seal))} MB/s)`,
);
console.log(`open request: ${median(open).toFixed(2)} ms/MB (${mbps(median(open))} MB/s)`);
console.log(`response frame seal + open: ${median(frames).toFixed(2)} ms/MB`);
