import type { PeerId, PrivateKey } from "@libp2p/interface";
import { type CapabilityRecord, encodeSignedRecord, MAX_ADDRS, signRecord } from "./messages.ts";

/**
 * This node's own signed record: built from the provider's description, numbered, timed and signed.
 * Concurrent requests for a fresh record share one signing.
 */

export type CapabilityDescription = Omit<
  CapabilityRecord,
  "v" | "peerId" | "seq" | "issuedAt" | "expiresAt" | "addrs"
> & {
  /** Addresses to publish; absent or empty: the node's own announced addresses. */
  addrs?: string[];
};

export interface OwnRecordInit {
  describe: () => CapabilityDescription;
  peerId: PeerId;
  privateKey: PrivateKey;
  /** The node's announced addresses (multiaddrs with /p2p/). */
  addresses: () => string[];
  ttlMs: number;
}

export interface SignedOwnRecord {
  record: CapabilityRecord;
  /** Wire form (see `encodeSignedRecord`). */
  bytes: Uint8Array;
}

export class OwnRecord {
  private latest: SignedOwnRecord | undefined;
  private building: Promise<SignedOwnRecord> | undefined;
  private seq = 0;

  constructor(private readonly init: OwnRecordInit) {}

  /** The last record signed, if any (it may have expired). */
  get current(): SignedOwnRecord | undefined {
    return this.latest;
  }

  /** Signs a record of the node as it is now. Throws what `describe` or `signRecord` throw. */
  refresh(): Promise<SignedOwnRecord> {
    this.building ??= this.build().finally(() => {
      this.building = undefined;
    });
    return this.building;
  }

  /** The current record if it was signed less than `maxAgeMs` ago, else a fresh one. */
  async fresh(maxAgeMs: number): Promise<SignedOwnRecord> {
    if (this.latest && Date.now() - this.latest.record.issuedAt < maxAgeMs) return this.latest;
    return this.refresh();
  }

  private async build(): Promise<SignedOwnRecord> {
    const { addrs, ...description } = this.init.describe();
    const now = Date.now();
    // Time-based, so a restarted node's records still beat the ones it issued before.
    this.seq = Math.max(this.seq + 1, now);
    const record: CapabilityRecord = {
      ...description,
      v: 1,
      peerId: this.init.peerId.toString(),
      addrs: (addrs?.length ? addrs : this.init.addresses()).slice(0, MAX_ADDRS),
      seq: this.seq,
      issuedAt: now,
      expiresAt: now + this.init.ttlMs,
    };
    const signed = await signRecord(record, this.init.privateKey);
    this.latest = { record: signed.record, bytes: encodeSignedRecord(signed) };
    return this.latest;
  }
}
