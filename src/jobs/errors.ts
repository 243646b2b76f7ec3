import { InfernetError } from "../util/errors.ts";

/** A state change the job model does not allow (e.g. a verified shard leased again). */
export class IllegalTransitionError extends InfernetError {}

/** No job, shard or assignment with that id. */
export class JobNotFoundError extends InfernetError {}

/** The same idempotency key was submitted again with a different spec. */
export class IdempotencyConflictError extends InfernetError {}

/** A provider already holds a copy of that shard, or the shard has all the copies it needs. */
export class LeaseRefusedError extends InfernetError {}

/** The assignment's lease expired or was revoked before the result arrived. */
export class LeaseLostError extends InfernetError {}

/** A second, different result was sent for the same assignment. */
export class ResultConflictError extends InfernetError {}
