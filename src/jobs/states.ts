import { IllegalTransitionError } from "./errors.ts";

/**
 * The job model's three state machines. Every legal move is listed here and nowhere else;
 * `job-store.ts` checks each change against these tables inside the transaction that makes it.
 *
 * - An assignment is one provider's lease on one copy of a shard: it starts `leased`, may be
 *   `running`, ends `returned` then `verified` (or `failed` when its result is rejected), or is
 *   `reassigned` when its lease expires or its provider is lost, which frees the copy for another.
 *   A returned copy whose result disagrees with the others' is `disputed`: it frees its place for
 *   a tie-breaking copy but keeps its result, and ends `verified` if the tie-break agrees with it.
 * - A shard's state follows its assignments: `queued` while it needs copies and none is in flight,
 *   `reassigned` the same after it has lost a copy, `returned` once `redundancy` copies are back, `verified`
 *   once a result is accepted.
 * - A job is `running` from its first lease, `returned` when every shard is, `verified` when every
 *   shard is verified (the merged result can be handed over), or `failed`.
 */
export const ASSIGNMENT_STATES = [
  "leased",
  "running",
  "returned",
  "verified",
  "failed",
  "reassigned",
  "disputed",
] as const;
export type AssignmentState = (typeof ASSIGNMENT_STATES)[number];

export const SHARD_STATES = ["queued", "leased", "running", "returned", "verified", "failed", "reassigned"] as const;
export type ShardState = (typeof SHARD_STATES)[number];

export const JOB_STATES = ["queued", "running", "returned", "verified", "failed"] as const;
export type JobState = (typeof JOB_STATES)[number];

export const ASSIGNMENT_TRANSITIONS: Readonly<Record<AssignmentState, readonly AssignmentState[]>> = {
  leased: ["running", "returned", "reassigned", "failed"],
  running: ["returned", "reassigned", "failed"],
  returned: ["verified", "failed", "disputed"],
  disputed: ["verified", "failed"],
  // A verified copy whose provider is then caught wrong elsewhere is failed and its shard reopened.
  verified: ["failed"],
  failed: [],
  reassigned: [],
};

export const SHARD_TRANSITIONS: Readonly<Record<ShardState, readonly ShardState[]>> = {
  // `reassigned`: a copy that came back was failed (its provider banned) before its twin was leased.
  queued: ["leased", "reassigned", "failed"],
  // `queued`: one copy came back and the others are not leased yet.
  // `verified` from a state short of `returned`: a disputed copy (counted as lost, yet it keeps its
  // vote) and a returned one agree while a third is in flight or its provider was just banned.
  leased: ["running", "returned", "queued", "reassigned", "verified", "failed"],
  // One copy came back or was lost while another is still only leased.
  running: ["leased", "returned", "queued", "reassigned", "verified", "failed"],
  // Verification rejected a copy: the shard needs another.
  returned: ["verified", "reassigned", "failed"],
  reassigned: ["leased", "verified", "failed"],
  // Reopened: the only copies that verified it came from a provider since banned (its job still runs).
  verified: ["reassigned"],
  failed: [],
};

export const JOB_TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  queued: ["running", "failed"],
  // `verified`: its last shard was decided before it counted as returned (see the shard table).
  running: ["returned", "verified", "failed"],
  // A shard's copy was rejected after every shard had returned: back to work.
  returned: ["running", "verified", "failed"],
  verified: [],
  failed: [],
};

/** Assignment states that hold one of the shard's `redundancy` copies. */
export const LIVE_ASSIGNMENT_STATES: readonly AssignmentState[] = ["leased", "running", "returned", "verified"];
/** Assignment states whose lease can expire. */
export const IN_FLIGHT_ASSIGNMENT_STATES: readonly AssignmentState[] = ["leased", "running"];
export const TERMINAL_JOB_STATES: readonly JobState[] = ["verified", "failed"];
export const TERMINAL_SHARD_STATES: readonly ShardState[] = ["verified", "failed"];

type Kind = "job" | "shard" | "assignment";

function check<S extends string>(
  table: Readonly<Record<S, readonly S[]>>,
  kind: Kind,
  id: string,
  from: S,
  to: S,
): void {
  if (!table[from].includes(to)) {
    throw new IllegalTransitionError(`${kind} ${id} cannot go from ${from} to ${to}`);
  }
}

export function assertAssignmentTransition(id: string, from: AssignmentState, to: AssignmentState): void {
  check(ASSIGNMENT_TRANSITIONS, "assignment", id, from, to);
}

export function assertShardTransition(id: string, from: ShardState, to: ShardState): void {
  check(SHARD_TRANSITIONS, "shard", id, from, to);
}

export function assertJobTransition(id: string, from: JobState, to: JobState): void {
  check(JOB_TRANSITIONS, "job", id, from, to);
}

/** Copies of a shard by assignment state, the input to `deriveShardState`. */
export interface CopyCounts {
  leased: number;
  running: number;
  returned: number;
  verified: number;
  lost: number;
}

/** The state a non-terminal shard should be in, given its copies. */
export function deriveShardState(copies: CopyCounts, redundancy: number): ShardState {
  if (copies.returned + copies.verified >= redundancy) return "returned";
  if (copies.running > 0) return "running";
  if (copies.leased > 0) return "leased";
  return copies.lost > 0 ? "reassigned" : "queued";
}
