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
  /** The node as it is now; undefined while it has nothing to announce (serves nothing, no aggregator). */
  describe: () => CapabilityDescription | undefined;
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
  private building: Promise<SignedOwnRecord | undefined> | undefined;
  private seq = 0;

  constructor(private readonly init: OwnRecordInit) {}

  /** The last record signed, if any (it may have expired). */
  get current(): SignedOwnRecord | undefined {
    return this.latest;
  }

  /**
   * Signs a record of the node as it is now; undefined (and no current record any more) while it has
   * nothing to announce. Throws what `describe` or `signRecord` throw.
   */
  refresh(): Promise<SignedOwnRecord | undefined> {
    this.building ??= this.build().finally(() => {
      this.building = undefined;
    });
    return this.building;
  }

  /** The current record if it was signed less than `maxAgeMs` ago, else a fresh one (see `refresh`). */
  async fresh(maxAgeMs: number): Promise<SignedOwnRecord | undefined> {
    if (this.latest && Date.now() - this.latest.record.issuedAt < maxAgeMs) return this.latest;
    return this.refresh();
  }

  private async build(): Promise<SignedOwnRecord | undefined> {
    const described = this.init.describe();
    if (!described) {
      // A record offering nothing would be invalid (messages.ts): peers stop hearing of this node instead.
      this.latest = undefined;
      return undefined;
    }
    const { addrs, ...description } = described;
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
