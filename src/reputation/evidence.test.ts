import { expect, test } from "bun:test";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import type { ShardPayload, ShardResult } from "../jobs/records.ts";
import { decode, encode } from "../node/wire.ts";
import { BadEvidenceError, checkEvidence, openEvidence, signEvidence } from "./evidence.ts";

const MODEL = { name: "toy", sha256: "12".repeat(32) };
const record: ShardPayload = { kind: "tensor", tensor: { type: "float32", dims: [1, 2], data: Float32Array.of(1, 2) } };
const answer = (a: number, b: number): ShardResult => ({
  kind: "tensor",
  shard: 0,
  providers: [],
  output: { type: "float32", dims: [1, 2], data: Float32Array.of(a, b) },
});
/** The "model" a checker runs: doubles its input. */
const reproduce = async (_m: typeof MODEL, r: ShardPayload) => {
  const t = (r as Extract<ShardPayload, { kind: "tensor" }>).tensor.data as Float32Array;
  return answer(2 * (t[0] as number), 2 * (t[1] as number));
};

async function signed(got: ShardResult, expected: ShardResult) {
  const key = await generateKeyPair("Ed25519");
  const self = peerIdFromPrivateKey(key).toString();
  const evidence = await signEvidence(
    key,
    self,
    { kind: "canary", detail: "canary wrong", record, got, expected },
    { provider: "liar", model: MODEL, jobId: "j", shard: 3, at: 1 },
  );
  return { evidence, self };
}

const reason = async (p: Promise<unknown>) =>
  p.then(
    () => "adopted",
    (e: Error) => `${e.name}: ${e.message}`,
  );

test("evidence that reproduces is adopted: signed by its aggregator, the record gives the reference here", async () => {
  const { evidence, self } = await signed(answer(4, 2), answer(2, 4));
  const checked = await checkEvidence(evidence.bytes, { reproduce });
  expect(checked.id).toBe(evidence.id);
  expect(checked.body).toMatchObject({ aggregator: self, provider: "liar", kind: "canary", shard: 3 });
});

test("forged, tampered, unverifiable and non-reproducing evidence is rejected", async () => {
  const { evidence } = await signed(answer(4, 2), answer(2, 4));
  // Tampered: the provider named in the body changed after signing.
  const envelope = decode(evidence.bytes) as { body: Uint8Array; signature: Uint8Array };
  const body = decode(envelope.body) as Record<string, unknown>;
  const forged = encode({ body: encode({ ...body, provider: "someone-else" }), signature: envelope.signature });
  expect(await reason(openEvidence(forged))).toContain("signature does not verify");
  // Signed by another key than the aggregator it names.
  const other = await generateKeyPair("Ed25519");
  const resigned = encode({ body: envelope.body, signature: await other.sign(envelope.body) });
  expect(await reason(openEvidence(resigned))).toContain("BadEvidenceError");
  expect(await reason(openEvidence(new Uint8Array([1, 2, 3])))).toContain("malformed evidence");
  // No engine here for the model: never adopted on trust.
  expect(await reason(checkEvidence(evidence.bytes))).toContain("cannot reproduce");
  // The "reference" is not what the record gives: the evidence frames an honest provider.
  const framed = await signed(answer(2, 4), answer(5, 5));
  expect(await reason(checkEvidence(framed.evidence.bytes, { reproduce }))).toContain("does not reproduce");
  // Both answers the same: no fault shown.
  const none = await signed(answer(2, 4), answer(2, 4));
  expect(await reason(checkEvidence(none.evidence.bytes, { reproduce }))).toContain("shows no fault");
  expect(new BadEvidenceError("x").name).toBe("BadEvidenceError");
});
