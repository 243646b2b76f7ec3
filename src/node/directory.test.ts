import { describe, expect, test } from "bun:test";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { type DirectoryChange, PeerDirectory } from "./directory.ts";
import { MNIST_SHA, pricedModels, STORIES_SHA, sampleRecord } from "./protocols/capability/fixtures.ts";

const [a, b, c] = await Promise.all([1, 2, 3].map(() => generateKeyPair("Ed25519")));
const now = 1_700_000_000_000;

describe("PeerDirectory", () => {
  test("keeps the newest record per peer: higher seq wins, equal or older is ignored", () => {
    const dir = new PeerDirectory();
    const changes: DirectoryChange[] = [];
    dir.addEventListener("change", (e) => changes.push(e.detail));
    expect(dir.upsert(sampleRecord(a!, { seq: 5 }, now), now)).toBe(true);
    expect(dir.upsert(sampleRecord(a!, { seq: 5, models: pricedModels(1) }, now), now)).toBe(false);
    expect(dir.upsert(sampleRecord(a!, { seq: 4 }, now), now)).toBe(false);
    expect(dir.get(a ? sampleRecord(a).peerId : "", now)?.seq).toBe(5);
    expect(dir.upsert(sampleRecord(a!, { seq: 6, load: { active: 4, queued: 9, maxConcurrent: 4 } }, now), now)).toBe(
      true,
    );
    expect(dir.get(sampleRecord(a!).peerId, now)?.load.queued).toBe(9);
    expect(changes.map((ch) => ch.type)).toEqual(["upsert", "upsert"]);
    expect(dir.receivedAt(sampleRecord(a!).peerId)).toBe(now);
  });

  test("providersOf filters by model; all() is sorted by peer id", () => {
    const dir = new PeerDirectory();
    dir.upsert(sampleRecord(a!, {}, now), now);
    dir.upsert(sampleRecord(b!, { models: pricedModels(1).slice(1) }, now), now);
    dir.upsert(sampleRecord(c!, {}, now), now);
    const ids = dir.all(now).map((r) => r.peerId);
    expect(ids).toEqual([...ids].sort());
    expect(
      dir
        .providersOf(STORIES_SHA, now)
        .map((r) => r.peerId)
        .sort(),
    ).toEqual([sampleRecord(a!).peerId, sampleRecord(c!).peerId].sort());
    expect(dir.providersOf(MNIST_SHA, now)).toHaveLength(3);
    expect(dir.providersOf("f".repeat(64), now)).toHaveLength(0);
  });

  test("aggregators() lists aggregators by fee, then peer id; providersOf skips those serving no model", () => {
    const dir = new PeerDirectory();
    dir.upsert(sampleRecord(a!, { aggregator: { feePercent: 1.5 } }, now), now);
    dir.upsert(sampleRecord(b!, { models: [], aggregator: { feePercent: 0.5 } }, now), now);
    dir.upsert(sampleRecord(c!, {}, now), now);
    expect(dir.aggregators(now).map((r) => r.peerId)).toEqual([sampleRecord(b!).peerId, sampleRecord(a!).peerId]);
    expect(
      dir
        .providersOf(STORIES_SHA, now)
        .map((r) => r.peerId)
        .sort(),
    ).toEqual([sampleRecord(a!).peerId, sampleRecord(c!).peerId].sort());
    dir.upsert(sampleRecord(c!, { seq: 2, aggregator: { feePercent: 1.5 } }, now), now);
    const sameFee = [sampleRecord(a!).peerId, sampleRecord(c!).peerId].sort();
    expect(dir.aggregators(now).map((r) => r.peerId)).toEqual([sampleRecord(b!).peerId, ...sameFee]);
    expect(dir.aggregators(now + 60_000)).toEqual([]);
  });

  test("records expire: hidden at once, dropped by prune, expired ones never stored", () => {
    const dir = new PeerDirectory();
    const changes: DirectoryChange[] = [];
    dir.addEventListener("change", (e) => changes.push(e.detail));
    dir.upsert(sampleRecord(a!, { expiresAt: now + 1000 }, now), now);
    dir.upsert(sampleRecord(b!, { expiresAt: now + 5000 }, now), now);
    expect(dir.upsert(sampleRecord(c!, { issuedAt: now - 2000, expiresAt: now - 1 }, now), now)).toBe(false);
    expect(dir.all(now + 1000).map((r) => r.peerId)).toEqual([sampleRecord(b!).peerId]);
    expect(dir.get(sampleRecord(a!).peerId, now + 1000)).toBeUndefined();
    expect(dir.size).toBe(2);
    expect(dir.prune(now + 1000)).toBe(1);
    expect(dir.size).toBe(1);
    expect(changes.at(-1)).toEqual({ type: "remove", peerId: sampleRecord(a!).peerId, reason: "expired" });
  });

  test("remove and a size bound that prunes before refusing new peers", () => {
    const dir = new PeerDirectory({ maxPeers: 2 });
    dir.upsert(sampleRecord(a!, { expiresAt: now + 1000 }, now), now);
    dir.upsert(sampleRecord(b!, {}, now), now);
    expect(dir.upsert(sampleRecord(c!, {}, now), now)).toBe(false);
    expect(dir.upsert(sampleRecord(c!, {}, now), now + 1000)).toBe(true);
    expect(dir.size).toBe(2);
    expect(dir.remove(sampleRecord(c!).peerId)).toBe(true);
    expect(dir.remove(sampleRecord(c!).peerId)).toBe(false);
    dir.clear();
    expect(dir.size).toBe(0);
  });
});
