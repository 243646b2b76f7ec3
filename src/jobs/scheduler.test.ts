import { describe, expect, test } from "bun:test";
import {
  expectedShardMs,
  MAX_IN_FLIGHT_PER_PROVIDER,
  measuredSpeeds,
  type PriceTooLowError,
  windowFor,
} from "./feasibility.ts";
import { checkSchedulable, MIN_SCHEDULING_SCORE, type Plan, planAssignments, schedulingWeight } from "./scheduler.ts";

function errorOf(fn: () => unknown): Error | undefined {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  return undefined;
}

import { copy, job, MODEL_SHA, OTHER_SHA, provider, T0 } from "./scheduler-fixtures.ts";

const byProvider = (plan: Plan) => {
  const counts: Record<string, number> = {};
  for (const l of plan.leases) counts[l.provider] = (counts[l.provider] ?? 0) + 1;
  return counts;
};

describe("expectedShardMs and windows", () => {
  test("time follows the announced speed, or the measured one when known", () => {
    const p = provider("a", { tps: 50 });
    expect(expectedShardMs(p, { count: 10, tokensPerRecord: 5 })).toBe(1000);
    expect(expectedShardMs(p, { count: 10, tokensPerRecord: 5 }, 4)).toBe(200);
    expect(windowFor(1000, 10_000)).toBe(10);
    expect(windowFor(1, 10_000)).toBe(MAX_IN_FLIGHT_PER_PROVIDER);
    expect(windowFor(60_000, 10_000)).toBe(1);
  });

  test("measured speed counts busy time, not time waiting in the window", () => {
    const work = { count: 10, tokensPerRecord: 1 };
    // Three copies leased together, returned 100 ms apart: 10 ms per unit, not 20.
    const copies = [100, 200, 300].map((t) => ({ copy: copy("a", 0, { state: "returned", returnedAt: t }), work }));
    expect(measuredSpeeds(copies).get("a")).toBe(10);
  });
});

describe("planAssignments", () => {
  test("redundant copies go to distinct providers, never to one already holding a copy", () => {
    const providers = ["a", "b", "c"].map((id) => provider(id));
    const state = {
      jobs: [job(6, { redundancy: 2, shardOver: (i) => (i === 0 ? { missing: 1, copies: [copy("a", T0)] } : {}) })],
    };
    const plan = planAssignments(state, providers, T0);
    expect(plan.refused).toEqual([]);
    expect(plan.leases).toHaveLength(11);
    for (let i = 0; i < 6; i++) {
      const holders = plan.leases.filter((l) => l.shardIndex === i).map((l) => l.provider);
      if (i === 0) holders.push("a");
      expect(new Set(holders).size).toBe(2);
    }
    expect(plan.leases.filter((l) => l.shardIndex === 0).map((l) => l.provider)).not.toContain("a");
  });

  test("a provider never holds more than its window, counting copies already in flight and other jobs", () => {
    const providers = [provider("a")];
    const state = {
      jobs: [
        job(20, { id: "j1", shardOver: (i) => (i < 2 ? { missing: 0, copies: [copy("a", T0)] } : {}) }),
        job(20, { id: "j2", deadlineMs: T0 + 90_000_000 }),
      ],
    };
    const plan = planAssignments(state, providers, T0, { maxInFlight: 5 });
    expect(plan.leases.map((l) => [l.jobId, l.shardIndex])).toEqual([
      ["j1", 2],
      ["j1", 3],
      ["j1", 4],
    ]);
    // Slow shards: 100 records at 100 units/s is 1 s each, so a 3 s window holds three.
    const slow = planAssignments({ jobs: [job(20, { count: 100 })] }, providers, T0, { windowTargetMs: 3_000 });
    expect(slow.leases).toHaveLength(3);
  });

  test("a slow provider gets fewer shards than a fast one", () => {
    const providers = [provider("fast", { tps: 1000 }), provider("slow", { tps: 50 })];
    const plan = planAssignments({ jobs: [job(40, { count: 100 })] }, providers, T0);
    const counts = byProvider(plan);
    expect(counts.fast).toBe(MAX_IN_FLIGHT_PER_PROVIDER);
    // 100 units at 50/s is 2 s: five fit its 10 s window, and the fast one is always sooner.
    expect(counts.slow).toBeLessThanOrEqual(5);
    expect(counts.slow ?? 0).toBeLessThan(counts.fast ?? 0);
  });

  test("a low-score provider gets fewer copies than an equal high-score one, in proportion", () => {
    const providers = [provider("good"), provider("poor")];
    // 10 shards of 100 units at 100 units/s: 1 s each, ten fit each provider's window.
    const state = { jobs: [job(10, { count: 100 })] };
    expect(byProvider(planAssignments(state, providers, T0))).toEqual({ good: 5, poor: 5 });
    const scores: Record<string, number> = { good: 1, poor: 0.25 };
    const asked: string[] = [];
    const score = (p: string, sha: string) => {
      asked.push(`${p}:${sha.slice(0, 4)}`);
      return scores[p] ?? 1;
    };
    const plan = planAssignments(state, providers, T0, { score });
    // "poor" competes as four times slower: its k-th copy is due at 4k s against "good"'s k s.
    expect(byProvider(plan)).toEqual({ good: 8, poor: 2 });
    expect(asked.sort()).toEqual(["good:cdcd", "poor:cdcd"]);
    // Its leases follow its speed, not its record: 1 and 2 s of queue, with slack.
    expect(plan.leases.filter((l) => l.provider === "poor").map((l) => [l.expectedMs, l.leaseMs])).toEqual([
      [1000, 5_000],
      [1000, 6_000],
    ]);
    expect(planAssignments(state, providers, T0, { score })).toEqual(plan);
  });

  test("the score is floored: a provider scoring 0 still gets work when nobody else has room", () => {
    expect(schedulingWeight(undefined)).toBe(1);
    expect(schedulingWeight(0)).toBe(MIN_SCHEDULING_SCORE);
    expect(schedulingWeight(Number.NaN)).toBe(MIN_SCHEDULING_SCORE);
    expect(schedulingWeight(7)).toBe(1);
    expect(schedulingWeight(0.5)).toBe(0.5);
    const alone = planAssignments({ jobs: [job(3)] }, [provider("zero")], T0, { score: () => 0 });
    expect(byProvider(alone)).toEqual({ zero: 3 });
  });

  test("providers above the job's price, excluded, expired or serving another model get nothing", () => {
    const providers = [
      provider("cheap", { price: 5 }),
      provider("dear", { price: 500 }),
      provider("banned"),
      provider("old", { expiresAt: T0 - 1 }),
      provider("other", { sha256: OTHER_SHA }),
    ];
    // 10 shards x 10 units x redundancy 1 = 100 units; 1,000 msat allows 10 sats per 1k units.
    const plan = planAssignments({ jobs: [job(10, { maxPriceMsat: 1_000 })] }, providers, T0, {
      exclude: new Set(["banned"]),
    });
    expect(byProvider(plan)).toEqual({ cheap: 10 });
  });

  test("price too low and model served by nobody are typed refusals, and nothing is leased", () => {
    const dear = [provider("a", { price: 500 }), provider("b", { price: 800 })];
    const low = planAssignments({ jobs: [job(10, { maxPriceMsat: 1_000, redundancy: 2 })] }, dear, T0);
    expect(low.leases).toEqual([]);
    expect(low.refused[0]?.error.name).toBe("PriceTooLowError");
    // 100 units x 2 copies at the second-cheapest 800 sats per 1k units.
    expect((low.refused[0]?.error as PriceTooLowError | undefined)?.neededMsat).toBe(160_000);

    const nobody = planAssignments({ jobs: [job(3)] }, [provider("x", { sha256: OTHER_SHA })], T0);
    expect(nobody.refused.map((r) => r.error.name)).toEqual(["ModelNotServedError"]);
    const tooFew = planAssignments({ jobs: [job(3, { redundancy: 3 })] }, [provider("a"), provider("b")], T0);
    expect(tooFew.refused[0]?.error.name).toBe("ModelNotServedError");
    expect(tooFew.refused[0]?.error).toBeInstanceOf(Error);
  });

  test("a new job that cannot meet its deadline is refused; a running one is flagged late and still planned", () => {
    const providers = [provider("a", { tps: 10 })];
    // 10 shards x 10 units at 10 units/s: 10 s of work, 5 s allowed.
    const tight = job(10, { deadlineMs: T0 + 5_000 });
    const refused = planAssignments({ jobs: [tight] }, providers, T0);
    expect(refused.leases).toEqual([]);
    expect(refused.refused[0]?.error.name).toBe("DeadlineTooShortError");

    const running = job(10, {
      deadlineMs: T0 + 5_000,
      shardOver: (i) => (i === 0 ? { missing: 0, copies: [copy("a", T0)] } : {}),
    });
    const late = planAssignments({ jobs: [running] }, providers, T0);
    expect(late.refused).toEqual([]);
    expect(late.late).toEqual([{ jobId: "job-1", expectedFinishMs: T0 + 10_000 }]);
    expect(late.leases.length).toBeGreaterThan(0);

    const past = planAssignments({ jobs: [running] }, providers, T0 + 6_000);
    expect(past.refused[0]?.error.name).toBe("DeadlineTooShortError");
  });

  test("a speculative copy is added only near the end, only for a slow copy, only on another provider", () => {
    const providers = [provider("a"), provider("b")];
    // 100 shards of 10 units at 100 units/s: 100 ms each. Shard 99 leased to "a" 10 s ago.
    const nearEnd = (leasedAt: number, unfinished: number) =>
      job(100, {
        shardOver: (i) =>
          i === 99
            ? { missing: 0, copies: [copy("a", leasedAt)] }
            : i >= 100 - unfinished
              ? { missing: 0, copies: [copy("b", T0 - 50)] }
              : {
                  done: true,
                  missing: 0,
                  // Returned 100 ms apart: "b" measures 100 ms per shard, as announced.
                  copies: [copy("b", T0 - 20_000, { state: "verified", returnedAt: T0 - 15_000 + i * 100 })],
                },
      });
    const spec = planAssignments({ jobs: [nearEnd(T0 - 10_000, 2)] }, providers, T0);
    expect(spec.leases).toEqual([
      expect.objectContaining({ shardIndex: 99, provider: "b", speculative: true }),
    ] as never);
    // Not near the end: 40 shards unfinished.
    expect(planAssignments({ jobs: [nearEnd(T0 - 10_000, 40)] }, providers, T0).leases).toEqual([]);
    // Not slow: leased 50 ms ago.
    expect(planAssignments({ jobs: [nearEnd(T0 - 50, 2)] }, providers, T0).leases).toEqual([]);
    // No other provider free of the shard: nothing, never a second copy on "a".
    expect(planAssignments({ jobs: [nearEnd(T0 - 10_000, 2)] }, [provider("a")], T0).leases).toEqual([]);
    // A shard still short of its copies takes precedence: no speculation while one waits.
    const waiting = nearEnd(T0 - 10_000, 2);
    const short = {
      ...waiting,
      shards: waiting.shards.map((s) => (s.index === 98 ? { ...s, missing: 1, copies: [] } : s)),
    };
    expect(planAssignments({ jobs: [short] }, providers, T0).leases.map((l) => [l.shardIndex, l.speculative])).toEqual([
      [98, false],
    ]);
    expect(planAssignments({ jobs: [nearEnd(T0 - 10_000, 2)] }, providers, T0, { speculate: false }).leases).toEqual(
      [],
    );
  });

  test("checkSchedulable gives the client the same typed reasons before a job is accepted", () => {
    const providers = [provider("a", { tps: 10 }), provider("b", { tps: 10 })];
    // 10 shards x 10 units, two providers at 10 units/s: 5 s.
    expect(checkSchedulable(job(10), providers, T0).finishMs).toBe(T0 + 5_000);
    expect(errorOf(() => checkSchedulable(job(10, { deadlineMs: T0 + 4_000 }), providers, T0))?.name).toBe(
      "DeadlineTooShortError",
    );
    expect(errorOf(() => checkSchedulable(job(10, { maxPriceMsat: 1 }), providers, T0))?.name).toBe("PriceTooLowError");
    expect(errorOf(() => checkSchedulable(job(10, { sha256: OTHER_SHA }), providers, T0))?.name).toBe(
      "ModelNotServedError",
    );
    expect(errorOf(() => checkSchedulable(job(10), providers, T0, { exclude: new Set(["a", "b"]) }))?.name).toBe(
      "ModelNotServedError",
    );
  });

  test("the same input gives the same plan, whatever the order of providers", () => {
    const providers = ["p3", "p1", "p2", "p4"].map((id, i) => provider(id, { tps: 50 + i * 30 }));
    const state = { jobs: [job(30, { redundancy: 2 }), job(12, { id: "j0", redundancy: 3 })] };
    const first = planAssignments(state, providers, T0);
    expect(planAssignments(state, providers, T0)).toEqual(first);
    expect(planAssignments(state, [...providers].reverse(), T0)).toEqual(first);
    expect(first.leases.length).toBeGreaterThan(0);
  });

  test("every lease names the model's sha and a lease long enough for the provider's queue", () => {
    const plan = planAssignments({ jobs: [job(4, { sha256: MODEL_SHA })] }, [provider("a")], T0);
    for (const l of plan.leases) {
      expect(l.expectedMs).toBe(100);
      expect(l.leaseMs).toBeGreaterThanOrEqual(5_000);
    }
  });
});
