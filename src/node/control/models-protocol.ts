import { z } from "zod";
import type { ModelChoice, ServeProgress } from "../../tui/state.ts";

/**
 * The model manager's part of the control API (the dashboard's `m`):
 * - `GET /v1/models` answers a `ModelChoice[]`: every catalog model, whether it is downloaded and
 *   verified already, and whether the node serves it;
 * - `POST /v1/models/serve {name}` streams NDJSON `ServeLine`s: progress while the files are fetched
 *   and the model loaded, then `served` with the names now served, or one error line;
 * - `POST /v1/models/unserve {name}` answers `{models}`, the names still served.
 * Both sides check what they read against these schemas.
 */
export const MODELS_PATH = "/v1/models";
export const SERVE_MODEL_PATH = "/v1/models/serve";
export const UNSERVE_MODEL_PATH = "/v1/models/unserve";

/** Largest serve or unserve body the node reads: one model name. */
export const MAX_MODEL_BODY_BYTES = 1024;
/** Longest model name accepted (catalog names are far shorter). */
export const MAX_MODEL_NAME_CHARS = 256;
/** Progress lines of one file and phase are sent at most this often (a change of file or phase at once). */
export const SERVE_PROGRESS_INTERVAL_MS = 200;
/** Most catalog entries the client reads (the catalog holds a handful). */
export const MAX_MODEL_CHOICES = 1024;
/** Most served model names in an answer (a capability record holds 64). */
export const MAX_SERVED_NAMES = 256;
/** Largest answer or stream line the client reads. */
export const MAX_MODELS_ANSWER_BYTES = 1024 * 1024;

export const ModelBodySchema = z.object({ name: z.string().trim().min(1).max(MAX_MODEL_NAME_CHARS) }).strict();
export type ModelBody = z.infer<typeof ModelBodySchema>;

const text = z.string().max(4096);
const bytes = z.number().int().nonnegative();
const names = z.array(z.string().max(MAX_MODEL_NAME_CHARS)).max(MAX_SERVED_NAMES);

export const ModelChoiceSchema = z.object({
  name: z.string().max(MAX_MODEL_NAME_CHARS),
  description: text,
  runtime: z.enum(["llama", "onnx"]),
  sizeBytes: bytes,
  cached: z.boolean(),
  served: z.boolean(),
});
export const ModelChoicesSchema = z.array(ModelChoiceSchema).max(MAX_MODEL_CHOICES);

export const ServeProgressSchema = z.object({
  phase: z.enum(["wait", "download", "verify", "load"]),
  file: z.string().max(MAX_MODEL_NAME_CHARS).optional(),
  doneBytes: bytes,
  totalBytes: bytes,
  bytesPerSecond: z.number().nonnegative(),
});

export const ServeLineSchema = z.discriminatedUnion("type", [
  ServeProgressSchema.extend({ type: z.literal("progress") }),
  z.object({ type: z.literal("served"), models: names }),
  z.object({ type: z.literal("error"), name: text, message: text, hint: text.optional() }),
  z.object({ type: z.literal("heartbeat") }),
]);
/** One line of the serve stream (heartbeats and error lines are added by ndjson.ts). */
export type ServeLine = { type: "progress" } & ServeProgress;
export type ServedLine = { type: "served"; models: string[] };

export const UnserveAnswerSchema = z.object({ models: names });
export type UnserveAnswer = z.infer<typeof UnserveAnswerSchema>;

/** Keeps the schemas and the dashboard's types (tui/state.ts) in step at compile time. */
const _sameChoice: (c: ModelChoice) => z.infer<typeof ModelChoiceSchema> = (c) => c;
const _sameProgress: (p: ServeProgress) => z.infer<typeof ServeProgressSchema> = (p) => p;
void _sameChoice;
void _sameProgress;
