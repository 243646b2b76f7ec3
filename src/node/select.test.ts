import { describe, expect, test } from "bun:test";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { MNIST_SHA, STORIES_SHA, sampleRecord } from "./protocols/capability/fixtures.ts";
import type { CapabilityRecord } from "./protocols/capability/messages.ts";
import {
  DEFAULT_TOKENS_PER_SECOND,
  expectedLatencyMs,
  queueWaitMs,
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
      rec(1, { load: idle, models: [{ name: "mnist-8", sha256: MNIST_SHA, runtime: "onnx" }] }),
      rec(2, { load: idle, price: { satsPer1kTokens: 50 } }),
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
    const old = rec(0, { seq: 1, price: { satsPer1kTokens: 5 }, load: idle });
    const cur = rec(0, { seq: 2, price: { satsPer1kTokens: 500 }, load: idle });
    expect(rankProviders([old, cur], { sha256: STORIES_SHA, maxPrice: 10 })).toEqual([]);
    expect(rankProviders([cur, old], { sha256: STORIES_SHA })).toEqual([cur]);
  });

  test("reputation: published score, else success rate with a neutral prior", () => {
    expect(reputationScore(rec(0, { reputation: { completed: 0, failed: 0 } }))).toBe(0.5);
    expect(reputationScore(rec(0, { reputation: { completed: 8, failed: 0 } }))).toBe(0.9);
    expect(reputationScore(rec(0, { reputation: { completed: 8, failed: 0, score: 0.2 } }))).toBe(0.2);
  });
});
