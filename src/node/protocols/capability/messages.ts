import { createHash } from "node:crypto";
import type { PrivateKey } from "@libp2p/interface";
import { peerIdFromPrivateKey, peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { CID } from "multiformats/cid";
import * as Digest from "multiformats/hashes/digest";
import { z } from "zod";
import { isValidFee, MAX_FEE_PERCENT, MIN_FEE_PERCENT } from "../../../jobs/fee.ts";
import {
  MAX_PRICE_MSAT_PER_1K,
  type ModelPrice,
  PRICE_UNITS,
  type PriceUnit,
  unitEstimateMsat,
} from "../../../payments/pricing.ts";
import { InfernetError } from "../../../util/errors.ts";
import { decode, ErrorMessageSchema, encode, WIRE_VERSION } from "../../wire.ts";

/**
 * Signed capability records: what a provider serves, on what hardware, at what price and load, and
 * whether the node is an aggregator (and at what fee).
 * A record travels as CBOR `{v, record: <CBOR of the record>, signature}`; the signature is the
 * peer's own Ed25519 key over a domain tag plus the record bytes exactly as sent, so a record can be
 * relayed by anyone (gossip, a directory) and still be checked against the peer id it names.
 */

export const CAPABILITY_RECORD_VERSION = WIRE_VERSION;
/** Largest signed record on the wire (a full record with 32 addresses and 64 models is ~9 KiB). */
export const MAX_SIGNED_RECORD_BYTES = 16 * 1024;
export const MAX_ADDRS = 32;
export const MAX_ADDR_LENGTH = 512;
export const MAX_MODELS = 64;
export const MAX_GPUS = 16;
/** Model, GPU and CPU names. */
export const MAX_NAME_LENGTH = 128;
export const MAX_SOFTWARE_LENGTH = 64;
export const MAX_PEER_ID_LENGTH = 128;
/** 2 TiB: no single GPU is near this. */
export const MAX_VRAM_BYTES = 2 ** 41;
/** 256 TiB of RAM. */
export const MAX_RAM_BYTES = 2 ** 48;
export const MAX_CPU_CORES = 8192;
export const MAX_CUDA_CORES = 1_000_000;
export const MAX_BANDWIDTH_GBPS = 100_000;
export const MAX_TOKENS_PER_SECOND = 1_000_000;
/** Jobs running or waiting on one provider. */
export const MAX_LOAD = 100_000;
/** Longest validity a record may claim: records are refreshed, never long-lived. */
export const MAX_RECORD_TTL_MS = 60 * 60_000;
/** How far ahead of our clock a peer's clock may run before its record counts as from the future. */
export const MAX_CLOCK_SKEW_MS = 60_000;
/** Domain separation: this signature can never be mistaken for one over another kind of message. */
const SIGNATURE_DOMAIN = new TextEncoder().encode("infernet/capability-record/1\n");
const ED25519_SIGNATURE_BYTES = 64;
/** Multicodecs for the DHT key of a model: CIDv1, raw (0x55), sha2-256 (0x12). */
const RAW_CODEC = 0x55;
const SHA2_256 = 0x12;
/** Aggregators announce themselves in the DHT under the sha256 of this string (see `aggregatorCid`). */
export const AGGREGATOR_DHT_KEY = "infernet:aggregator:v1";

export const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface GpuInfo {
  name: string;
  /** Bytes. */
  vramTotal: number;
  /** Bytes. */
  vramFree: number;
  cudaCores?: number;
  computeCapability?: string;
}

export interface CapabilityRecord {
  v: 1;
  peerId: string;
  addrs: string[];
  /** Infernet version. */
  software: string;
  hardware: {
    gpus: GpuInfo[];
    cpu: { model: string; cores: number };
    /** Bytes. */
    ramTotal: number;
    memoryBandwidthGBps?: number;
    /** Self-benchmark, from the store. */
    tokensPerSecond?: number;
  };
  /** Empty only for an aggregator that serves no model itself. Each with its price (payments/pricing.ts). */
  models: { name: string; sha256: string; runtime: "llama" | "onnx"; price: ModelPrice }[];
  /** Present when the node runs jobs for clients (`infernet start --aggregator`). */
  aggregator?: { feePercent: number };
  /** Direct requests must be paid as they stream, over a channel from the client (payments/direct.ts). */
  requiresPayment?: true;
  /** The node's Lightning node (its LND's public key): an aggregator pays its earnings there by keysend. */
  lightning?: { nodeKey: string };
  /** The provider's X25519 public key (hex) for end-to-end encrypted payloads (crypto/envelope.ts). */
  encryption?: { x25519: string };
  load: { active: number; queued: number; maxConcurrent: number };
  /** `score` is in [0, 1] when present. */
  reputation: { completed: number; failed: number; score?: number };
  /** Increases with every record a peer issues; the newest wins. */
  seq: number;
  /** Milliseconds since the epoch. */
  issuedAt: number;
  expiresAt: number;
}

/** What a record offers for one model (runtime and price), when it serves it. */
export function offerFor(record: CapabilityRecord, sha256: string): CapabilityRecord["models"][number] | undefined {
  return record.models.find((m) => m.sha256 === sha256);
}

/**
 * A record's price for one model as msat per main unit of work (equal to sats per 1,000 units):
 * the main rate plus compute-seconds over the announced speed (pricing.ts). Infinity when it does
 * not serve the model.
 */
export function unitPriceMsat(record: CapabilityRecord, sha256: string): number {
  const offer = offerFor(record, sha256);
  return offer
    ? unitEstimateMsat(offer.price, offer.runtime, record.hardware.tokensPerSecond)
    : Number.POSITIVE_INFINITY;
}

export interface SignedCapabilityRecord {
  record: CapabilityRecord;
  signature: Uint8Array;
}

export type RecordErrorReason = "malformed" | "unsupported-version" | "invalid-value" | "unsupported-key";

/** A record that cannot be used: not CBOR, wrong shape, unknown version or impossible values. */
export class InvalidRecordError extends InfernetError {
  constructor(
    readonly reason: RecordErrorReason,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options);
  }
}

/** The signature does not verify with the key of the peer id the record names. */
export class BadSignatureError extends InfernetError {}

/** The record's validity ended. */
export class ExpiredRecordError extends InfernetError {}

const uint = (max: number) => z.number().int().min(0).max(max);
const count = uint(Number.MAX_SAFE_INTEGER);
const boundedFloat = (max: number) => z.number().min(0).max(max);
const name = z.string().min(1).max(MAX_NAME_LENGTH);

const addrSchema = z
  .string()
  .min(1)
  .max(MAX_ADDR_LENGTH)
  .refine(
    (a) => {
      try {
        multiaddr(a);
        return true;
      } catch {
        return false;
      }
    },
    { message: "not a multiaddr" },
  );

const gpuSchema = z
  .object({
    name,
    vramTotal: uint(MAX_VRAM_BYTES),
    vramFree: uint(MAX_VRAM_BYTES),
    cudaCores: uint(MAX_CUDA_CORES).optional(),
    computeCapability: z
      .string()
      .regex(/^\d{1,2}\.\d{1,2}$/)
      .optional(),
  })
  .refine((g) => g.vramFree <= g.vramTotal, { message: "vramFree exceeds vramTotal", path: ["vramFree"] });

/** A model's price on the wire: msat per 1,000 of each unit (payments/pricing.ts). */
export const PriceSchema = z.strictObject(
  Object.fromEntries(PRICE_UNITS.map((u) => [u, uint(MAX_PRICE_MSAT_PER_1K).optional()])) as Record<
    PriceUnit,
    z.ZodOptional<z.ZodNumber>
  >,
);
export const capabilityRecordSchema = z
  .object({
    v: z.literal(CAPABILITY_RECORD_VERSION),
    peerId: z.string().min(1).max(MAX_PEER_ID_LENGTH),
    addrs: z.array(addrSchema).max(MAX_ADDRS),
    software: z.string().min(1).max(MAX_SOFTWARE_LENGTH),
    hardware: z.object({
      gpus: z.array(gpuSchema).max(MAX_GPUS),
      cpu: z.object({ model: z.string().max(MAX_NAME_LENGTH), cores: uint(MAX_CPU_CORES) }),
      ramTotal: uint(MAX_RAM_BYTES),
      memoryBandwidthGBps: boundedFloat(MAX_BANDWIDTH_GBPS).optional(),
      tokensPerSecond: boundedFloat(MAX_TOKENS_PER_SECOND).optional(),
    }),
    models: z
      .array(
        z.object({
          name,
          sha256: z.string().regex(SHA256_HEX),
          runtime: z.enum(["llama", "onnx"]),
          price: PriceSchema,
        }),
      )
      .max(MAX_MODELS),
    requiresPayment: z.literal(true).optional(),
    lightning: z.strictObject({ nodeKey: z.string().regex(/^0[23][0-9a-f]{64}$/) }).optional(),
    encryption: z.strictObject({ x25519: z.string().regex(/^[0-9a-f]{64}$/) }).optional(),
    aggregator: z
      .object({
        feePercent: z.number().refine(isValidFee, {
          message: `fee is not between ${MIN_FEE_PERCENT}% and ${MAX_FEE_PERCENT}% in whole basis points`,
        }),
      })
      .optional(),
    load: z
      .object({ active: uint(MAX_LOAD), queued: uint(MAX_LOAD), maxConcurrent: uint(MAX_LOAD) })
      .refine((l) => l.active <= l.maxConcurrent, { message: "more active jobs than slots", path: ["active"] }),
    reputation: z.object({ completed: count, failed: count, score: z.number().min(0).max(1).optional() }),
    seq: count,
    issuedAt: count,
    expiresAt: count,
  })
  // A node with nothing to offer has no record to announce.
  .refine((r) => r.models.length > 0 || r.aggregator !== undefined, {
    message: "serves no model and is no aggregator",
    path: ["models"],
  })
  .refine((r) => r.expiresAt > r.issuedAt, { message: "expires before it is issued", path: ["expiresAt"] })
  .refine((r) => r.expiresAt - r.issuedAt <= MAX_RECORD_TTL_MS, {
    message: `valid for more than ${MAX_RECORD_TTL_MS} ms`,
    path: ["expiresAt"],
  });

const envelopeSchema = z.object({
  v: z.literal(CAPABILITY_RECORD_VERSION),
  record: z.instanceof(Uint8Array),
  signature: z.instanceof(Uint8Array).refine((s) => s.byteLength === ED25519_SIGNATURE_BYTES, {
    message: "not an Ed25519 signature",
  }),
});

/** Decodes untrusted bytes of at most `maxBytes` (strict CBOR, see wire.ts) or throws InvalidRecordError. */
function decodeBounded(bytes: Uint8Array, maxBytes: number, what: string): unknown {
  if (bytes.byteLength > maxBytes) {
    throw new InvalidRecordError("malformed", `${what} of ${bytes.byteLength} bytes exceeds ${maxBytes}`);
  }
  try {
    return decode(bytes);
  } catch (cause) {
    throw new InvalidRecordError("malformed", `${what} is not valid CBOR`, { cause });
  }
}

function checkVersion(value: unknown, what: string): void {
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw new InvalidRecordError("malformed", `${what} is not a CBOR map`);
  }
  const v = (value as { v?: unknown }).v;
  if (v !== CAPABILITY_RECORD_VERSION) {
    throw new InvalidRecordError(
      "unsupported-version",
      `${what} version ${String(v).slice(0, 20)} is not supported (want 1)`,
    );
  }
}

/** The bytes a record signature covers: a domain tag, then the record's CBOR exactly as sent. */
export function signedPayload(recordBytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIGNATURE_DOMAIN.byteLength + recordBytes.byteLength);
  out.set(SIGNATURE_DOMAIN, 0);
  out.set(recordBytes, SIGNATURE_DOMAIN.byteLength);
  return out;
}

function encodeRecord(record: CapabilityRecord): Uint8Array {
  return encode(record);
}

function parseRecordValues(value: unknown): CapabilityRecord {
  const result = capabilityRecordSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.length ? issue.path.join(".") : "record";
    throw new InvalidRecordError("invalid-value", `${where}: ${issue?.message ?? "invalid"}`, { cause: result.error });
  }
  return result.data as CapabilityRecord;
}

/**
 * Signs a record with the node's key. The record is validated first (a provider learns at once
 * that it would announce something every peer drops) and must name the key's own peer id.
 */
export async function signRecord(record: CapabilityRecord, privateKey: PrivateKey): Promise<SignedCapabilityRecord> {
  const clean = parseRecordValues(JSON.parse(JSON.stringify(record)));
  const own = peerIdFromPrivateKey(privateKey).toString();
  if (clean.peerId !== own) {
    throw new InvalidRecordError("invalid-value", `record names peer ${clean.peerId}, but the key is ${own}'s`);
  }
  const signature = await privateKey.sign(signedPayload(encodeRecord(clean)));
  return { record: clean, signature };
}

/** The wire form: gossip payloads and CAPABILITY_PROTOCOL answers carry these bytes. */
export function encodeSignedRecord(signed: SignedCapabilityRecord): Uint8Array {
  return encode({ v: CAPABILITY_RECORD_VERSION, record: encodeRecord(signed.record), signature: signed.signature });
}

function decodeEnvelope(bytes: Uint8Array): { record: Uint8Array; signature: Uint8Array } {
  const value = decodeBounded(bytes, MAX_SIGNED_RECORD_BYTES, "signed record");
  checkVersion(value, "signed record");
  const envelope = envelopeSchema.safeParse(value);
  if (!envelope.success) {
    throw new InvalidRecordError("malformed", "signed record envelope has missing or wrong fields", {
      cause: envelope.error,
    });
  }
  return envelope.data;
}

/**
 * Checks a record from a peer and returns it: well-formed, version 1, every value possible, signed
 * by the Ed25519 key its peer id names, issued no later than `now` plus clock skew, not expired.
 * Throws InvalidRecordError, BadSignatureError or ExpiredRecordError.
 */
export function verifyRecord(input: Uint8Array | SignedCapabilityRecord, now: number = Date.now()): CapabilityRecord {
  let recordBytes: Uint8Array;
  let signature: Uint8Array;
  let value: unknown;
  if (input instanceof Uint8Array) {
    ({ record: recordBytes, signature } = decodeEnvelope(input));
    value = decodeBounded(recordBytes, MAX_SIGNED_RECORD_BYTES, "record body");
  } else {
    value = input.record;
    signature = input.signature;
    if (!(signature instanceof Uint8Array) || signature.byteLength !== ED25519_SIGNATURE_BYTES) {
      throw new BadSignatureError("not an Ed25519 signature");
    }
  }
  checkVersion(value, "record");
  const record = parseRecordValues(value);
  if (!(input instanceof Uint8Array)) recordBytes = encodeRecord(record);
  checkSignature(record.peerId, signedPayload(recordBytes!), signature);
  if (record.issuedAt > now + MAX_CLOCK_SKEW_MS) {
    throw new InvalidRecordError("invalid-value", `issuedAt is ${record.issuedAt - now} ms in the future`);
  }
  if (record.expiresAt <= now) {
    throw new ExpiredRecordError(`record of ${record.peerId} expired ${now - record.expiresAt} ms ago`);
  }
  return record;
}

function checkSignature(peerIdText: string, payload: Uint8Array, signature: Uint8Array): void {
  let key: ReturnType<typeof peerIdFromString>["publicKey"];
  try {
    const peerId = peerIdFromString(peerIdText);
    if (peerId.type !== "Ed25519") {
      throw new InvalidRecordError("unsupported-key", `peer id ${peerIdText} is not an Ed25519 key`);
    }
    key = peerId.publicKey;
  } catch (cause) {
    if (cause instanceof InvalidRecordError) throw cause;
    throw new InvalidRecordError("invalid-value", `peerId ${peerIdText} is not a peer id`, { cause });
  }
  let ok: boolean | Promise<boolean>;
  try {
    ok = key?.verify(payload, signature) ?? false;
  } catch (cause) {
    throw new BadSignatureError(`signature check failed for ${peerIdText}`, { cause });
  }
  // @libp2p/crypto verifies Ed25519 synchronously under Node and Bun; a promise means a build we do not run on.
  if (ok !== true) throw new BadSignatureError(`signature does not match the key of ${peerIdText}`);
}

/** DHT key under which providers of a model file are announced: CIDv1(raw, sha2-256 digest of the file). */
export function modelCid(sha256: string): CID {
  if (!SHA256_HEX.test(sha256)) throw new InvalidRecordError("invalid-value", `"${sha256}" is not a sha256 hex digest`);
  return CID.createV1(RAW_CODEC, Digest.create(SHA2_256, new Uint8Array(Buffer.from(sha256, "hex"))));
}

const AGGREGATOR_CID = CID.createV1(
  RAW_CODEC,
  Digest.create(SHA2_256, new Uint8Array(createHash("sha256").update(AGGREGATOR_DHT_KEY).digest())),
);

/**
 * DHT key under which aggregators are announced: CIDv1(raw, sha2-256 of AGGREGATOR_DHT_KEY), built
 * like a model's key, so "which aggregators are there" is the same provider lookup as for a model.
 */
export function aggregatorCid(): CID {
  return AGGREGATOR_CID;
}

// CAPABILITY_PROTOCOL messages: one request, one answer, each a length-prefixed CBOR map (wire.ts).

/** Largest request frame: a request carries no payload. */
export const MAX_REQUEST_BYTES = 256;
/** Largest answer frame: a signed record plus its wrapper. */
export const MAX_RESPONSE_BYTES = MAX_SIGNED_RECORD_BYTES + 2048;

/** Error codes of CAPABILITY_PROTOCOL answers, besides wire.ts's `malformed`, `too-large`, `unsupported-version`. */
export const NOT_A_PROVIDER = "not-a-provider";

export const GetRequestSchema = z.object({ v: z.literal(CAPABILITY_RECORD_VERSION), type: z.literal("get") });
export type GetRequest = z.output<typeof GetRequestSchema>;

export const RecordMessageSchema = z.object({
  v: z.literal(CAPABILITY_RECORD_VERSION),
  type: z.literal("record"),
  signed: z.custom<Uint8Array>((b) => b instanceof Uint8Array && b.byteLength <= MAX_SIGNED_RECORD_BYTES),
});
export type RecordMessage = z.output<typeof RecordMessageSchema>;

export const ResponseSchema = z.discriminatedUnion("type", [RecordMessageSchema, ErrorMessageSchema]);
export type CapabilityResponse = z.output<typeof ResponseSchema>;
