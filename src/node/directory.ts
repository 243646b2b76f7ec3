import { TypedEventEmitter } from "@libp2p/interface";
import type { CapabilityRecord } from "./protocols/capability/messages.ts";

/**
 * What this node knows about other peers: the newest verified capability record of each, until it
 * expires. Records get here only after `verifyRecord`; the directory trusts them and only orders them.
 */

/** Peers remembered at most; a flood of fresh peer ids cannot grow memory past this. */
export const MAX_DIRECTORY_PEERS = 10_000;

export type DirectoryChange =
  | { type: "upsert"; peerId: string; record: CapabilityRecord }
  | { type: "remove"; peerId: string; reason: "removed" | "expired" };

export interface PeerDirectoryEvents {
  change: CustomEvent<DirectoryChange>;
}

export interface PeerDirectoryInit {
  maxPeers?: number;
}

interface Entry {
  record: CapabilityRecord;
  receivedAt: number;
}

export class PeerDirectory extends TypedEventEmitter<PeerDirectoryEvents> {
  private readonly entries = new Map<string, Entry>();
  private readonly maxPeers: number;

  constructor(init: PeerDirectoryInit = {}) {
    super();
    this.maxPeers = init.maxPeers ?? MAX_DIRECTORY_PEERS;
  }

  /**
   * Stores a verified record if it is newer (higher seq) than what we hold for that peer. Returns
   * false for an older or equal seq, an expired record, or a new peer while the directory is full.
   */
  upsert(record: CapabilityRecord, now: number = Date.now()): boolean {
    if (record.expiresAt <= now) return false;
    const known = this.entries.get(record.peerId);
    if (known && known.record.seq >= record.seq) return false;
    if (!known && this.entries.size >= this.maxPeers && this.prune(now) === 0) return false;
    this.entries.set(record.peerId, { record, receivedAt: now });
    this.safeDispatchEvent("change", { detail: { type: "upsert", peerId: record.peerId, record } });
    return true;
  }

  /** The peer's record, unless it has expired. */
  get(peerId: string, now: number = Date.now()): CapabilityRecord | undefined {
    const entry = this.entries.get(peerId);
    return entry && entry.record.expiresAt > now ? entry.record : undefined;
  }

  /** When the current record of a peer arrived (ms since the epoch). */
  receivedAt(peerId: string): number | undefined {
    return this.entries.get(peerId)?.receivedAt;
  }

  /** Unexpired records, ordered by peer id. */
  all(now: number = Date.now()): CapabilityRecord[] {
    return [...this.entries.values()]
      .filter((e) => e.record.expiresAt > now)
      .map((e) => e.record)
      .sort((a, b) => (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0));
  }

  /** Unexpired records of peers that serve the model file with this sha256. */
  providersOf(sha256: string, now: number = Date.now()): CapabilityRecord[] {
    return this.all(now).filter((r) => r.models.some((m) => m.sha256 === sha256));
  }

  /** Unexpired records of aggregators, cheapest fee first, then by peer id. */
  aggregators(now: number = Date.now()): CapabilityRecord[] {
    // A stable sort: among equal fees the peer id order of `all()` stays.
    return this.all(now)
      .filter((r) => r.aggregator !== undefined)
      .sort((a, b) => (a.aggregator?.feePercent ?? 0) - (b.aggregator?.feePercent ?? 0));
  }

  remove(peerId: string): boolean {
    if (!this.entries.delete(peerId)) return false;
    this.safeDispatchEvent("change", { detail: { type: "remove", peerId, reason: "removed" } });
    return true;
  }

  /** Forgets expired records; returns how many. */
  prune(now: number = Date.now()): number {
    let removed = 0;
    for (const [peerId, entry] of this.entries) {
      if (entry.record.expiresAt > now) continue;
      this.entries.delete(peerId);
      removed++;
      this.safeDispatchEvent("change", { detail: { type: "remove", peerId, reason: "expired" } });
    }
    return removed;
  }

  /** Records held, expired ones included until the next prune. */
  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    for (const peerId of [...this.entries.keys()]) this.remove(peerId);
  }
}
