import { describe, expect, test } from "bun:test";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { pricedModels, STORIES_SHA, sampleRecord } from "./protocols/capability/fixtures.ts";
import type { CapabilityRecord } from "./protocols/capability/messages.ts";
import {
  CLAIM_WEIGHT,
  DEFAULT_TOKENS_PER_SECOND,
  expectedLatencyMs,
  type LocalReputation,
  NEUTRAL_REPUTATION,
  queueWaitMs,
  rankingReputation,
  rankProviders,
  reputationScore,
  TYPICAL_JOB_TOKENS,
  UNKNOWN_RTT_MS,
} from "./select.ts";

const keys: PrivateKey[] = await Promise.all(Array.from({ length: 5 }, () => generateKeyPair("Ed25519")));
const rec = (i: number, over: Partial<CapabilityRecord> = {}) => sampleRecord(keys[i] as PrivateKey, over);
const idle = { active: 0, queued: 0, maxConcurrent: 4 };
const ids = (rs: CapabilityRecord[]) => rs.map((r) => r.peerId);

describe("rankProviders", () => {
  test("keeps only peers that serve the model, within the price cap, not excluded, with slots", () => {
    const records = [
      rec(0, { load: idle }),
      rec(1, { load: idle, models: pricedModels(10).slice(1) }),
      rec(2, { load: idle, models: pricedModels(50) }),
      rec(3, { load: idle }),
      rec(4, { load: { active: 0, queued: 0, maxConcurrent: 0 } }),
    ];
    const ranked = rankProviders(records, { sha256: STORIES_SHA, maxPrice: 30, exclude: new Set([rec(3).peerId]) });
    expect(ids(ranked)).toEqual([rec(0).peerId]);
    expect(rankProviders(records, { sha256: STORIES_SHA })).toHaveLength(3);
    expect(rankProviders(records, { sha256: "c".repeat(64) })).toEqual([]);
  });

  test("lowest expected latency first: measured RTT plus queue wait", () => {
    const rtt = new Map([
      [rec(0).peerId, 200],
      [rec(1).peerId, 5],
      [rec(2).peerId, 60],
    ]);
    const busy = { active: 4, queued: 4, maxConcurrent: 4 };
    const records = [rec(0, { load: idle }), rec(1, { load: busy }), rec(2, { load: idle })];
    const ranked = rankProviders(records, { sha256: STORIES_SHA, latencyMs: (id) => rtt.get(id) });
    // rec(1) is 5 ms away but has a full queue: 2 rounds of 256 tokens at 120 tok/s.
    expect(ids(ranked)).toEqual([rec(2).peerId, rec(0).peerId, rec(1).peerId]);
    expect(queueWaitMs(records[1] as CapabilityRecord)).toBeCloseTo(2 * (TYPICAL_JOB_TOKENS / 120.25) * 1000, 5);
  });

  test("unknown RTT and unknown speed fall back to named defaults", () => {
    const r = rec(0, { load: { active: 1, queued: 0, maxConcurrent: 1 } });
    delete r.hardware.tokensPerSecond;
    expect(expectedLatencyMs(r, undefined)).toBe(
      UNKNOWN_RTT_MS + (TYPICAL_JOB_TOKENS / DEFAULT_TOKENS_PER_SECOND) * 1000,
    );
    expect(expectedLatencyMs(rec(0, { load: idle }), 12)).toBe(12);
  });

  test("similar latency: better reputation wins; then exact latency; then peer id", () => {
    const rtt = new Map([
      [rec(0).peerId, 10],
      [rec(1).peerId, 12],
      [rec(2).peerId, 11],
    ]);
    const records = [
      rec(0, { load: idle, reputation: { completed: 5, failed: 5 } }),
      rec(1, { load: idle, reputation: { completed: 100, failed: 0 } }),
      rec(2, { load: idle, reputation: { completed: 5, failed: 5 } }),
    ];
    const ranked = rankProviders(records, { sha256: STORIES_SHA, latencyMs: (id) => rtt.get(id) });
    expect(ids(ranked)).toEqual([rec(1).peerId, rec(0).peerId, rec(2).peerId]);
    const same = [rec(3, { load: idle }), rec(4, { load: idle })];
    const tie = rankProviders(same, { sha256: STORIES_SHA, latencyMs: () => 10 });
    expect(ids(tie)).toEqual(ids(same).sort());
    expect(ids(rankProviders([...same].reverse(), { sha256: STORIES_SHA, latencyMs: () => 10 }))).toEqual(ids(tie));
  });

  test("a much closer peer beats a better reputation", () => {
    const rtt = new Map([
      [rec(0).peerId, 5],
      [rec(1).peerId, 300],
    ]);
    const records = [
      rec(0, { load: idle, reputation: { completed: 0, failed: 3 } }),
      rec(1, { load: idle, reputation: { completed: 1000, failed: 0 } }),
    ];
    expect(ids(rankProviders(records, { sha256: STORIES_SHA, latencyMs: (id) => rtt.get(id) }))).toEqual(ids(records));
  });

  test("one record per peer, the highest seq", () => {
    const old = rec(0, { seq: 1, models: pricedModels(5), load: idle });
    const cur = rec(0, { seq: 2, models: pricedModels(500), load: idle });
    expect(rankProviders([old, cur], { sha256: STORIES_SHA, maxPrice: 10 })).toEqual([]);
    expect(rankProviders([cur, old], { sha256: STORIES_SHA })).toEqual([cur]);
  });

  test("reputation: published score, else success rate with a neutral prior", () => {
    expect(reputationScore(rec(0, { reputation: { completed: 0, failed: 0 } }))).toBe(0.5);
    expect(reputationScore(rec(0, { reputation: { completed: 8, failed: 0 } }))).toBe(0.9);
    expect(reputationScore(rec(0, { reputation: { completed: 8, failed: 0, score: 0.2 } }))).toBe(0.2);
  });

  test("banned here: never chosen, however close, cheap or well-claimed", () => {
    const records = [
      rec(0, { load: idle, reputation: { completed: 1000, failed: 0 } }),
      rec(1, { load: idle, reputation: { completed: 0, failed: 0 } }),
    ];
    const asked: string[] = [];
    const reputation = (id: string, sha: string): LocalReputation => {
      asked.push(sha);
      return { score: 0, banned: id === rec(0).peerId, known: false };
    };
    const latencyMs = (id: string) => (id === rec(0).peerId ? 1 : 200);
    expect(ids(rankProviders(records, { sha256: STORIES_SHA, latencyMs, reputation }))).toEqual([rec(1).peerId]);
    expect(new Set(asked)).toEqual(new Set([STORIES_SHA]));
    expect(ids(rankProviders(records, { sha256: STORIES_SHA, latencyMs }))).toEqual(ids(records));
  });

  test("a local record replaces the claim; a stranger's claim counts only half, towards a neutral 0.5", () => {
    const liar = rec(0, { load: idle, reputation: { completed: 1000, failed: 0, score: 1 } });
    const known = rec(1, { load: idle, reputation: { completed: 0, failed: 0, score: 0.1 } });
    const stranger = rec(2, { load: idle, reputation: { completed: 0, failed: 0, score: 0.2 } });
    const local = new Map<string, LocalReputation>([
      [known.peerId, { score: 0.8, banned: false, known: true }],
      // An announced speed alone is no record: the claim is used.
      [stranger.peerId, { score: 1, banned: false, known: false }],
    ]);
    const reputation = (id: string) => local.get(id) ?? { score: 1, banned: false, known: false };
    // Same latency: the known provider at 0.8 beats the perfect claim (0.75) and the poor one (0.35).
    const ranked = rankProviders([stranger, liar, known], { sha256: STORIES_SHA, latencyMs: () => 10, reputation });
    expect(ids(ranked)).toEqual([known.peerId, liar.peerId, stranger.peerId]);
    expect(rankingReputation(liar)).toBe(CLAIM_WEIGHT * 1 + (1 - CLAIM_WEIGHT) * NEUTRAL_REPUTATION);
    expect(rankingReputation(stranger, reputation(stranger.peerId))).toBeCloseTo(0.35, 12);
    expect(rankingReputation(known, reputation(known.peerId))).toBe(0.8);
    // A poor local record loses to a stranger's claim: first-hand evidence is not protected.
    const bad = { score: 0.3, banned: false, known: true };
    expect(rankingReputation(known, bad)).toBeLessThan(rankingReputation(liar));
    // No claim can lift a stranger above NEUTRAL + CLAIM_WEIGHT / 2.
    expect(rankingReputation(liar)).toBeLessThanOrEqual(0.75);
  });
});
