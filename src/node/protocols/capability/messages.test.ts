import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { decode } from "cborg";
import { MAX_FEE_PERCENT, MIN_FEE_PERCENT } from "../../../jobs/fee.ts";
import { encode as encodeCbor, parseMessage } from "../../wire.ts";
import { MNIST_SHA, pricedModels, STORIES_SHA, sampleRecord } from "./fixtures.ts";
import {
  AGGREGATOR_DHT_KEY,
  aggregatorCid,
  type CapabilityRecord,
  encodeSignedRecord,
  GetRequestSchema,
  MAX_ADDRS,
  MAX_CLOCK_SKEW_MS,
  MAX_MODELS,
  MAX_RECORD_TTL_MS,
  MAX_SIGNED_RECORD_BYTES,
  modelCid,
  ResponseSchema,
  signedPayload,
  signRecord,
  verifyRecord,
} from "./messages.ts";

const alice = await generateKeyPair("Ed25519");
const bob = await generateKeyPair("Ed25519");

/** Signs any value as a record body, skipping signRecord's checks: what a malicious peer can send. */
async function forge(record: unknown, key = alice, v: unknown = 1): Promise<Uint8Array> {
  const body = encodeCbor(record);
  return encodeCbor({ v, record: body, signature: await key.sign(signedPayload(body)) });
}

async function rejectsForged(bytes: Promise<Uint8Array>, now: number | undefined, name: string, reason?: string) {
  const b = await bytes;
  rejects(() => verifyRecord(b, now), name, reason);
}

function rejects(fn: () => unknown, name: string, reason?: string): void {
  try {
    fn();
  } catch (err) {
    expect((err as Error).name).toBe(name);
    if (reason) expect((err as { reason?: string }).reason).toBe(reason);
    return;
  }
  throw new Error(`expected ${name}`);
}

describe("signed capability records", () => {
  test("a signed record verifies from its wire bytes and as an object", async () => {
    const signed = await signRecord(sampleRecord(alice), alice);
    const bytes = encodeSignedRecord(signed);
    expect(bytes.byteLength).toBeLessThan(MAX_SIGNED_RECORD_BYTES);
    expect(verifyRecord(bytes)).toEqual(signed.record);
    expect(verifyRecord(signed)).toEqual(signed.record);
  });

  test("signRecord refuses invalid records and records naming another peer", async () => {
    await expect(signRecord(sampleRecord(bob), alice)).rejects.toHaveProperty("name", "InvalidRecordError");
    const bad = sampleRecord(alice, { models: [{ ...pricedModels(1)[0], price: { tokensOut: -1 } }] as never });
    await expect(signRecord(bad, alice)).rejects.toHaveProperty("name", "InvalidRecordError");
  });

  test("a changed field breaks the signature (bytes and object)", async () => {
    const signed = await signRecord(sampleRecord(alice), alice);
    const envelope = decode(encodeSignedRecord(signed)) as { record: Uint8Array; signature: Uint8Array };
    const cheaper = encodeCbor({ ...signed.record, models: pricedModels(1) });
    const tampered = encodeCbor({ v: 1, record: cheaper, signature: envelope.signature });
    rejects(() => verifyRecord(tampered), "BadSignatureError");
    rejects(() => verifyRecord({ ...signed, record: { ...signed.record, seq: 99 } }), "BadSignatureError");
    const flipped = new Uint8Array(signed.signature);
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    rejects(() => verifyRecord({ record: signed.record, signature: flipped }), "BadSignatureError");
  });

  test("a record signed with the wrong key, or another peer's record under my id, is rejected", async () => {
    await rejectsForged(forge(sampleRecord(alice), bob), undefined, "BadSignatureError");
    const bobs = await signRecord(sampleRecord(bob), bob);
    const aliceId = sampleRecord(alice).peerId;
    rejects(() => verifyRecord({ ...bobs, record: { ...bobs.record, peerId: aliceId } }), "BadSignatureError");
  });

  test("peer ids that are not Ed25519 keys are refused", async () => {
    const secp = await generateKeyPair("secp256k1");
    await rejectsForged(forge(sampleRecord(secp), alice), undefined, "InvalidRecordError", "unsupported-key");
    const notAPeer = { ...sampleRecord(alice), peerId: "not-a-peer-id" };
    await rejectsForged(forge(notAPeer), undefined, "InvalidRecordError", "invalid-value");
  });

  const now = Date.now();
  const gpu = sampleRecord(alice).hardware.gpus[0];
  const impossible: [string, Partial<CapabilityRecord> | Record<string, unknown>][] = [
    ["negative price", { models: [{ ...pricedModels(1)[0], price: { tokensOut: -5 } }] }],
    ["fractional msat", { models: [{ ...pricedModels(1)[0], price: { tokensOut: 0.5 } }] }],
    ["an unknown price unit", { models: [{ ...pricedModels(1)[0], price: { gigaflops: 1 } }] }],
    ["absurd price", { models: [{ ...pricedModels(1)[0], price: { inferences: 1e12 } }] }],
    ["negative VRAM", { hardware: { ...sampleRecord(alice).hardware, gpus: [{ ...gpu, vramTotal: -1 }] } }],
    ["free VRAM above total", { hardware: { ...sampleRecord(alice).hardware, gpus: [{ ...gpu, vramFree: 2 ** 40 }] } }],
    ["absurd RAM", { hardware: { ...sampleRecord(alice).hardware, ramTotal: 2 ** 52 } }],
    ["fractional cores", { hardware: { ...sampleRecord(alice).hardware, cpu: { model: "x", cores: 1.5 } } }],
    ["more active jobs than slots", { load: { active: 5, queued: 0, maxConcurrent: 4 } }],
    ["negative queue", { load: { active: 0, queued: -1, maxConcurrent: 4 } }],
    ["score above 1", { reputation: { completed: 1, failed: 0, score: 7 } }],
    ["bad sha256", { models: [{ name: "x", sha256: "XYZ", runtime: "llama" }] }],
    ["unknown runtime", { models: [{ name: "x", sha256: STORIES_SHA, runtime: "tpu" }] }],
    [
      "too many models",
      { models: Array.from({ length: MAX_MODELS + 1 }, () => ({ name: "m", sha256: MNIST_SHA, runtime: "onnx" })) },
    ],
    ["too many addrs", { addrs: Array.from({ length: MAX_ADDRS + 1 }, (_, i) => `/ip4/10.0.0.${i % 250}/tcp/1`) }],
    ["an address that is not a multiaddr", { addrs: ["http://example.com"] }],
    ["expiry too far ahead", { issuedAt: now, expiresAt: now + MAX_RECORD_TTL_MS + 1 }],
    ["expiry before issue", { issuedAt: now, expiresAt: now - 1 }],
    ["a float seq", { seq: 1.5 }],
    ["missing load", { load: undefined }],
  ];
  for (const [what, change] of impossible) {
    test(`impossible value rejected: ${what}`, async () => {
      const record = JSON.parse(JSON.stringify({ ...sampleRecord(alice, {}, now), ...change }));
      await rejectsForged(forge(record), now, "InvalidRecordError", "invalid-value");
    });
  }

  test("issued in the future beyond the clock skew: rejected; within it: accepted", async () => {
    const ahead = (ms: number) => sampleRecord(alice, { issuedAt: now + ms, expiresAt: now + ms + 60_000 }, now);
    await rejectsForged(forge(ahead(MAX_CLOCK_SKEW_MS + 1000)), now, "InvalidRecordError", "invalid-value");
    expect(verifyRecord(await forge(ahead(MAX_CLOCK_SKEW_MS - 1000)), now).peerId).toBe(sampleRecord(alice).peerId);
  });

  test("an expired record is rejected", async () => {
    const bytes = encodeSignedRecord(await signRecord(sampleRecord(alice, {}, now), alice));
    expect(verifyRecord(bytes, now + 59_000).seq).toBe(1);
    rejects(() => verifyRecord(bytes, now + 60_000), "ExpiredRecordError");
  });

  test("unknown versions, garbage and oversized input are refused with a reason", async () => {
    await rejectsForged(forge(sampleRecord(alice), alice, 2), undefined, "InvalidRecordError", "unsupported-version");
    await rejectsForged(
      forge({ ...sampleRecord(alice), v: 2 }),
      undefined,
      "InvalidRecordError",
      "unsupported-version",
    );
    rejects(() => verifyRecord(new Uint8Array([0xff, 0x00, 0x13])), "InvalidRecordError", "malformed");
    rejects(() => verifyRecord(encodeCbor([1, 2, 3])), "InvalidRecordError", "malformed");
    rejects(() => verifyRecord(new Uint8Array(MAX_SIGNED_RECORD_BYTES + 1)), "InvalidRecordError", "malformed");
    const noSig = encodeCbor({ v: 1, record: encodeCbor(sampleRecord(alice)), signature: new Uint8Array(3) });
    rejects(() => verifyRecord(noSig), "InvalidRecordError", "malformed");
  });
});

describe("payment and encryption fields", () => {
  test("a provider's encryption key, Lightning node and payment requirement are signed with its record", async () => {
    const extra = {
      requiresPayment: true as const,
      lightning: { nodeKey: `02${"ab".repeat(32)}` },
      encryption: { x25519: "cd".repeat(32) },
    };
    const signed = await signRecord(sampleRecord(alice, extra), alice);
    expect(verifyRecord(encodeSignedRecord(signed))).toMatchObject(extra);
    // Swapping the key for one the forger holds breaks the signature.
    const swapped = { ...signed.record, encryption: { x25519: "ef".repeat(32) } };
    rejects(() => verifyRecord({ ...signed, record: swapped }), "BadSignatureError");
  });

  test("malformed keys are refused", async () => {
    for (const bad of [
      { encryption: { x25519: "cd".repeat(31) } },
      { encryption: { x25519: "XY".repeat(32) } },
      { lightning: { nodeKey: `04${"ab".repeat(32)}` } },
    ]) {
      await rejectsForged(forge(sampleRecord(alice, bad as never)), undefined, "InvalidRecordError", "invalid-value");
    }
  });
});

describe("aggregator records", () => {
  test("a record with an aggregator fee round-trips and verifies; the fee is signed", async () => {
    const signed = await signRecord(sampleRecord(alice, { aggregator: { feePercent: 1.5 } }), alice);
    expect(signed.record.aggregator).toEqual({ feePercent: 1.5 });
    const bytes = encodeSignedRecord(signed);
    expect(verifyRecord(bytes)).toEqual(signed.record);
    expect(verifyRecord(signed).aggregator?.feePercent).toBe(1.5);
    const cheaper = { ...signed.record, aggregator: { feePercent: MIN_FEE_PERCENT } };
    rejects(() => verifyRecord({ ...signed, record: cheaper }), "BadSignatureError");
  });

  test("a record without one still verifies and has no aggregator field", async () => {
    const signed = await signRecord(sampleRecord(alice), alice);
    const record = verifyRecord(encodeSignedRecord(signed));
    expect("aggregator" in record).toBe(false);
  });

  test("an aggregator may serve no model; a node that is neither is refused", async () => {
    const aggregatorOnly = sampleRecord(alice, { models: [], aggregator: { feePercent: MAX_FEE_PERCENT } });
    const signed = await signRecord(aggregatorOnly, alice);
    expect(verifyRecord(encodeSignedRecord(signed)).models).toEqual([]);
    await expect(signRecord(sampleRecord(alice, { models: [] }), alice)).rejects.toHaveProperty(
      "name",
      "InvalidRecordError",
    );
    await rejectsForged(forge(sampleRecord(alice, { models: [] })), undefined, "InvalidRecordError", "invalid-value");
  });

  const badFees: [string, unknown][] = [
    ["below the minimum", { feePercent: MIN_FEE_PERCENT - 0.01 }],
    ["above the maximum", { feePercent: MAX_FEE_PERCENT + 0.01 }],
    ["negative", { feePercent: -1 }],
    ["finer than a basis point", { feePercent: 1.001 }],
    ["text", { feePercent: "1%" }],
    ["missing", {}],
    ["not an object", 1],
  ];
  for (const [what, aggregator] of badFees) {
    test(`a fee that is ${what} is refused by the schema (signing and verifying)`, async () => {
      const record = { ...sampleRecord(alice), aggregator } as CapabilityRecord;
      await expect(signRecord(record, alice)).rejects.toHaveProperty("name", "InvalidRecordError");
      await rejectsForged(forge(record), undefined, "InvalidRecordError", "invalid-value");
    });
  }
});

describe("model keys and requests", () => {
  test("modelCid is CIDv1 raw over the sha2-256 digest of the file", () => {
    const cid = modelCid(STORIES_SHA);
    expect(cid.version).toBe(1);
    expect(cid.code).toBe(0x55);
    expect(cid.multihash.code).toBe(0x12);
    expect(Buffer.from(cid.multihash.digest).toString("hex")).toBe(STORIES_SHA);
    expect(modelCid(STORIES_SHA).equals(cid)).toBe(true);
    expect(() => modelCid("abc")).toThrow();
  });

  test("aggregatorCid is CIDv1 raw over the sha2-256 of the aggregator key, like a model key", () => {
    const digest = createHash("sha256").update(AGGREGATOR_DHT_KEY).digest("hex");
    expect(AGGREGATOR_DHT_KEY).toBe("infernet:aggregator:v1");
    expect(aggregatorCid().equals(modelCid(digest))).toBe(true);
    expect(aggregatorCid().equals(modelCid(STORIES_SHA))).toBe(false);
  });

  test("request and answer schemas: bounded, versioned", async () => {
    expect(parseMessage(encodeCbor({ v: 1, type: "get" }), GetRequestSchema)).toEqual({ v: 1, type: "get" });
    expect(() => parseMessage(encodeCbor({ v: 2, type: "get" }), GetRequestSchema)).toThrow("unsupported wire version");
    expect(() => parseMessage(encodeCbor({ v: 1, type: "put" }), GetRequestSchema)).toThrow("invalid message");
    const signed = encodeSignedRecord(await signRecord(sampleRecord(alice), alice));
    expect(parseMessage(encodeCbor({ v: 1, type: "record", signed }), ResponseSchema)).toMatchObject({
      type: "record",
    });
    const huge = new Uint8Array(MAX_SIGNED_RECORD_BYTES + 1);
    expect(() => parseMessage(encodeCbor({ v: 1, type: "record", signed: huge }), ResponseSchema)).toThrow();
    expect(
      parseMessage(encodeCbor({ v: 1, type: "error", code: "not-a-provider", message: "no" }), ResponseSchema),
    ).toMatchObject({
      code: "not-a-provider",
    });
  });
});
