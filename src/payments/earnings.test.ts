import { describe, expect, test } from "bun:test";
import { earningsBps, FULL_BPS, REPUTATION_FLOOR_BPS, reputationBps, SPEED_FLOOR_BPS, speedBps } from "./earnings.ts";

describe("earnings multipliers", () => {
  test("speed: the fastest copy earns all of its price, a slower one the ratio, never under the floor", () => {
    expect(speedBps(100, 100)).toBe(FULL_BPS);
    expect(speedBps(100, 150)).toBe(FULL_BPS);
    expect(speedBps(125, 100)).toBe(8_000);
    expect(speedBps(110, 100)).toBe(9_090);
    expect(speedBps(1_000, 100)).toBe(SPEED_FLOOR_BPS);
    // Unknown or zero times pay in full rather than guess.
    expect(speedBps(0, 0)).toBe(FULL_BPS);
    expect(speedBps(Number.NaN, 10)).toBe(FULL_BPS);
  });

  test("reputation: a full score earns all, a score of 0 the floor, out-of-range scores are clamped", () => {
    expect(reputationBps(1)).toBe(FULL_BPS);
    expect(reputationBps(0)).toBe(REPUTATION_FLOOR_BPS);
    expect(reputationBps(0.5)).toBe(9_500);
    expect(reputationBps(7)).toBe(FULL_BPS);
    expect(reputationBps(-1)).toBe(REPUTATION_FLOOR_BPS);
  });

  test("together: multiplied and rounded down, between the two floors' product and 1", () => {
    expect(earningsBps({ wallMs: 110, fastestWallMs: 100, score: 0.5 })).toBe(Math.floor((9_090 * 9_500) / FULL_BPS));
    expect(earningsBps({ wallMs: 10_000, fastestWallMs: 1, score: 0 })).toBe(7_200);
    expect(earningsBps({ wallMs: 5, fastestWallMs: 5, score: 1 })).toBe(FULL_BPS);
  });
});
