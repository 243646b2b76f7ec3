import type { ShardResult } from "../../jobs/records.ts";
import { resultFromWire, resultToWire } from "../../jobs/shard-codec.ts";
import { decode, encode } from "../wire.ts";

/**
 * A copy's result as stored: the CBOR of its wire form with the provider list left out, so two
 * providers that computed the same thing store the same bytes and their sha256 digests agree; the
 * digest is what redundant copies are compared by.
 */

/** Provenance is kept per copy in the assignments table, not in the result bytes. */
const NO_PROVIDER = "-";

export function resultBytes(result: ShardResult): Uint8Array {
  return encode(resultToWire({ ...result, providers: [NO_PROVIDER] }));
}

/** A stored result back, credited to `providers` (the copies that agreed on it). */
export function resultFromBytes(bytes: Uint8Array, providers: string[]): ShardResult {
  const result = resultFromWire(decode(bytes), Number.MAX_SAFE_INTEGER);
  return { ...result, providers };
}
