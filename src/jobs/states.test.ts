import { describe, expect, test } from "bun:test";
import {
  ASSIGNMENT_TRANSITIONS,
  assertAssignmentTransition,
  assertJobTransition,
  assertShardTransition,
  deriveShardState,
  JOB_TRANSITIONS,
  SHARD_TRANSITIONS,
} from "./states.ts";

function thrown(fn: () => void): Error | undefined {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  return undefined;
}

describe("job state machines", () => {
  test("terminal states have no way out, but a banned provider's verified copy and its shard", () => {
    // Disowned (JobStore.disown): the copy fails, the shard goes back to work.
    expect(ASSIGNMENT_TRANSITIONS.verified).toEqual(["failed"]);
    expect(ASSIGNMENT_TRANSITIONS.failed).toEqual([]);
    expect(ASSIGNMENT_TRANSITIONS.reassigned).toEqual([]);
    expect(SHARD_TRANSITIONS.verified).toEqual(["reassigned"]);
    expect(SHARD_TRANSITIONS.failed).toEqual([]);
    expect(JOB_TRANSITIONS.verified).toEqual([]);
    expect(JOB_TRANSITIONS.failed).toEqual([]);
  });

  test("legal moves pass and illegal ones throw IllegalTransitionError naming both states", () => {
    expect(() => assertAssignmentTransition("a1", "leased", "running")).not.toThrow();
    expect(() => assertAssignmentTransition("a1", "running", "returned")).not.toThrow();
    expect(() => assertShardTransition("7", "returned", "verified")).not.toThrow();
    expect(() => assertJobTransition("j", "queued", "running")).not.toThrow();
    const cases: (() => void)[] = [
      () => assertAssignmentTransition("a1", "returned", "running"),
      () => assertAssignmentTransition("a1", "reassigned", "returned"),
      () => assertAssignmentTransition("a1", "verified", "returned"),
      () => assertShardTransition("7", "queued", "verified"),
      () => assertShardTransition("7", "verified", "leased"),
      () => assertJobTransition("j", "verified", "running"),
      () => assertJobTransition("j", "queued", "verified"),
    ];
    for (const c of cases) expect(thrown(c)?.name).toBe("IllegalTransitionError");
    expect(thrown(() => assertShardTransition("7", "verified", "leased"))?.message).toBe(
      "shard 7 cannot go from verified to leased",
    );
  });

  test("a shard's state follows its copies", () => {
    const none = { leased: 0, running: 0, returned: 0, verified: 0, lost: 0 };
    expect(deriveShardState(none, 2)).toBe("queued");
    expect(deriveShardState({ ...none, leased: 1 }, 2)).toBe("leased");
    expect(deriveShardState({ ...none, leased: 1, running: 1 }, 2)).toBe("running");
    expect(deriveShardState({ ...none, returned: 1, running: 1 }, 2)).toBe("running");
    expect(deriveShardState({ ...none, returned: 2 }, 2)).toBe("returned");
    expect(deriveShardState({ ...none, returned: 1, lost: 1 }, 2)).toBe("reassigned");
    expect(deriveShardState({ ...none, returned: 1 }, 2)).toBe("queued");
  });
});
