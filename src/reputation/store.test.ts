import { expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { Store } from "../store/db.ts";
import {
  FAULT_WEIGHT,
  freshStats,
  replicationProbability,
  SPOT_CHECK_RATE,
  score,
  scoreParts,
  TRUST_STREAK,
} from "./score.ts";
import { BAN_BASE_MS, BAN_ESCALATION, BAN_MAX_MS, banDurationMs, ReputationStore } from "./store.ts";

const SHA = "ef".repeat(32);
const COPY = { latencyMs: 200, units: 100 };

test("the score follows the written formula: a newcomer scores 1, a fault weighs FAULT_WEIGHT losses, a ban zeroes it", () => {
  const s = freshStats("p", SHA, 0);
  expect(score(s)).toBe(1);
  const one = { ...s, verified: 9, faulty: 1, returned: 10, lost: 2, seen: 3, missed: 1 };
  const accuracy = 10 / (10 + FAULT_WEIGHT);
  const completion = 11 / (11 + 2);
  const uptime = 4 / 5;
  expect(score(one)).toBeCloseTo(accuracy ** 2 * completion * uptime, 12);
  expect(score(one, true)).toBe(0);
  // Honest hardware: delivering a tenth of the announced speed (beyond the allowed 3x gap) costs score.
  const slow = { ...s, units: 1000, wallMs: 100_000, announcedUps: 100 };
  expect(scoreParts(slow).speed).toBeCloseTo(0.3, 12);
  expect(scoreParts({ ...slow, announcedUps: 20 }).speed).toBe(1);
});

test("replication falls with a verified streak, never below the spot-check rate", () => {
  expect(replicationProbability(0)).toBe(1);
  expect(replicationProbability(TRUST_STREAK - 1)).toBe(1);
  expect(replicationProbability(TRUST_STREAK * 2)).toBe(0.5);
  expect(replicationProbability(1e9)).toBe(SPOT_CHECK_RATE);
});

test("bans escalate, expire, and survive reopening the database; stats and penalties too", () => {
  using dir = tempDir();
  const path = join(dir.path, "state.db");
  let now = 1_000_000;
  {
    const store = Store.openFile(path);
    const rep = new ReputationStore(store, () => now);
    rep.verified("p", SHA, COPY);
    rep.verified("p", SHA, COPY);
    rep.faulty("p", SHA, COPY);
    expect(rep.stats("p", SHA)).toMatchObject({ verified: 2, faulty: 1, streak: 0, returned: 3 });
    const first = rep.ban("p", "canary wrong", "ev1", "me");
    expect(first.until - now).toBe(BAN_BASE_MS);
    expect(rep.bannedNow()).toEqual(new Set(["p"]));
    // Another fault in work from before the ban is the same offence: the ban stands as it was.
    now += 1_000;
    expect(rep.ban("p", "a second copy wrong", undefined, "me")).toEqual(first);
    now -= 1_000;
    rep.penalize("p", "job1", "fault:canary", 1234.2, "ev1");
    store.close();
  }
  now += BAN_BASE_MS + 1;
  const store = Store.openFile(path);
  const rep = new ReputationStore(store, () => now);
  expect(rep.banned("p")).toBeUndefined();
  expect(rep.stats("p", SHA)).toMatchObject({ verified: 2, faulty: 1 });
  expect(rep.penalties("p")).toMatchObject([{ jobId: "job1", amountMsat: 1235, evidenceId: "ev1" }]);
  const second = rep.ban("p", "again", undefined, "me");
  expect(second.count).toBe(2);
  expect(second.until - now).toBe(BAN_BASE_MS * BAN_ESCALATION);
  expect(rep.score("p", SHA)).toBe(0);
  expect(banDurationMs(100)).toBe(BAN_MAX_MS);
  store.close();
});
