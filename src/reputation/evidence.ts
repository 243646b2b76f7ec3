import type { PrivateKey } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { z } from "zod";
import type { ShardPayload, ShardResult } from "../jobs/records.ts";
import { resultFromWire, resultToWire, shardFromWire, shardToWire } from "../jobs/shard-codec.ts";
import { compareResults, DEFAULT_TOLERANCE, type Tolerance } from "../jobs/verify/compare.ts";
import { payloadCount, resultCount } from "../jobs/verify/records.ts";
import { decode, encode } from "../node/wire.ts";
import { errorMessage, InfernetError } from "../util/errors.ts";

/**
 * Evidence that a provider returned a wrong answer, in a form another aggregator can check for
 * itself before it adopts the ban: the one record the provider got wrong (its input as sent), what
 * the provider answered, the reference answer and the verdict, signed by the aggregator that saw
 * it with its node key (Ed25519, named by its peer id). Checking means: the signature verifies,
 * the input's digest matches, the two answers really differ under the verifier's rules, and, run
 * again on the checker's own engine, the record gives the reference answer and not the provider's.
 * A claim the checker cannot reproduce (no engine for the model) is unverifiable and never adopted.
 */

/** Largest evidence accepted (one record, two answers). */
export const MAX_EVIDENCE_BYTES = 4 * 1024 ** 2;
export const EVIDENCE_VERSION = 1;

export type FaultKind = "canary" | "majority" | "shape" | "re-score";

export interface Fault {
  kind: FaultKind;
  detail: string;
  /** The record the provider got wrong and the two answers, when the fault is about one record. */
  record?: ShardPayload;
  got?: ShardResult;
  expected?: ShardResult;
}

export interface EvidenceBody {
  v: typeof EVIDENCE_VERSION;
  aggregator: string;
  provider: string;
  model: { name: string; sha256: string };
  kind: FaultKind;
  detail: string;
  jobId: string;
  shard: number;
  /** sha256 of `record` (the wire bytes). */
  inputSha256: string;
  record: Uint8Array;
  got: Uint8Array;
  expected: Uint8Array;
  at: number;
}

export interface Evidence {
  id: string;
  body: EvidenceBody;
  /** The signed envelope, as stored and exchanged. */
  bytes: Uint8Array;
}

/** Evidence that fails a check: its signature, its shape, or it does not show (or reproduce) a fault. */
export class BadEvidenceError extends InfernetError {}

const bytes = z.custom<Uint8Array>((x) => x instanceof Uint8Array, "must be a byte string");
const SHA256 = z.string().regex(/^[0-9a-f]{64}$/);
const BodySchema = z.strictObject({
  v: z.literal(EVIDENCE_VERSION),
  aggregator: z.string().min(1).max(128),
  provider: z.string().min(1).max(128),
  model: z.strictObject({ name: z.string().min(1).max(256), sha256: SHA256 }),
  kind: z.enum(["canary", "majority", "shape", "re-score"]),
  detail: z.string().max(1024),
  jobId: z.string().max(128),
  shard: z.int().min(0),
  inputSha256: SHA256,
  record: bytes,
  got: bytes,
  expected: bytes,
  at: z.number().int().min(0),
});
const EnvelopeSchema = z.strictObject({ body: bytes, signature: bytes });

const sha256 = (data: Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

/** Signs the evidence of a one-record fault with the aggregator's node key. */
export async function signEvidence(
  key: PrivateKey,
  aggregator: string,
  fault: Required<Pick<Fault, "record" | "got" | "expected">> & Fault,
  context: { provider: string; model: { name: string; sha256: string }; jobId: string; shard: number; at: number },
): Promise<Evidence> {
  const record = encode(shardToWire({ index: 0, start: 0, count: 1, payload: fault.record }));
  const body: EvidenceBody = {
    v: EVIDENCE_VERSION,
    aggregator,
    provider: context.provider,
    model: context.model,
    kind: fault.kind,
    detail: fault.detail.slice(0, 1024),
    jobId: context.jobId,
    shard: context.shard,
    inputSha256: sha256(record),
    record,
    got: encode(resultToWire({ ...fault.got, shard: 0, providers: ["-"] })),
    expected: encode(resultToWire({ ...fault.expected, shard: 0, providers: ["-"] })),
    at: context.at,
  };
  const encoded = encode(body);
  const signature = await key.sign(encoded);
  const envelope = encode({ body: encoded, signature });
  return { id: sha256(encoded), body, bytes: envelope };
}

export interface CheckOptions {
  tolerance?: Tolerance;
  /** Runs the record on the checker's own engine; undefined when it cannot (then nothing is adopted). */
  reproduce?: (model: { name: string; sha256: string }, record: ShardPayload) => Promise<ShardResult | undefined>;
}

/** The evidence's record and answers, decoded. */
export function evidenceParts(body: EvidenceBody): { record: ShardPayload; got: ShardResult; expected: ShardResult } {
  try {
    const record = shardFromWire(decode(body.record)).payload;
    const got = resultFromWire(decode(body.got));
    const expected = resultFromWire(decode(body.expected));
    if (payloadCount(record) !== 1 || resultCount(expected) !== 1) throw new Error("not one record");
    return { record, got, expected };
  } catch (cause) {
    throw new BadEvidenceError(`the evidence's record or answers are malformed: ${errorMessage(cause)}`, { cause });
  }
}

/** Parses and checks the signature; see `checkEvidence` for the full check. */
export async function openEvidence(envelope: Uint8Array): Promise<Evidence> {
  if (envelope.byteLength > MAX_EVIDENCE_BYTES) {
    throw new BadEvidenceError(`evidence of ${envelope.byteLength} bytes; at most ${MAX_EVIDENCE_BYTES}`);
  }
  let parsed: z.infer<typeof EnvelopeSchema>;
  let body: EvidenceBody;
  try {
    parsed = EnvelopeSchema.parse(decode(envelope));
    body = BodySchema.parse(decode(parsed.body)) as EvidenceBody;
  } catch (cause) {
    throw new BadEvidenceError(`malformed evidence: ${errorMessage(cause)}`, { cause });
  }
  let ok = false;
  try {
    const key = peerIdFromString(body.aggregator).publicKey;
    ok = key !== undefined && (await key.verify(parsed.body, parsed.signature));
  } catch (cause) {
    throw new BadEvidenceError(`the evidence names no usable aggregator key: ${errorMessage(cause)}`, { cause });
  }
  if (!ok) throw new BadEvidenceError(`the evidence's signature does not verify with ${body.aggregator}'s key`);
  if (sha256(body.record) !== body.inputSha256)
    throw new BadEvidenceError("the evidence's input digest does not match");
  return { id: sha256(parsed.body), body, bytes: envelope };
}

/**
 * The full check before adopting a ban: signature, shape, the answers differ, and the record run
 * here gives the reference answer, not the provider's. Throws `BadEvidenceError` saying which failed.
 */
export async function checkEvidence(envelope: Uint8Array, options: CheckOptions = {}): Promise<Evidence> {
  const evidence = await openEvidence(envelope);
  const { record, got, expected } = evidenceParts(evidence.body);
  const tolerance = options.tolerance ?? DEFAULT_TOLERANCE;
  if (compareResults(got, expected, tolerance).same) {
    throw new BadEvidenceError("the evidence shows no fault: the provider's answer matches the reference");
  }
  const mine = options.reproduce ? await options.reproduce(evidence.body.model, record) : undefined;
  if (!mine) {
    throw new BadEvidenceError(`cannot reproduce the evidence: no engine here for ${evidence.body.model.name}`, {
      hint: "serve or pull the model, then check the evidence again",
    });
  }
  if (!compareResults(mine, expected, tolerance).same) {
    throw new BadEvidenceError("the evidence does not reproduce: the record gives another answer here");
  }
  if (compareResults(mine, got, tolerance).same) {
    throw new BadEvidenceError("the evidence does not reproduce: the provider's answer is what the record gives here");
  }
  return evidence;
}
