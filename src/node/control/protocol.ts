import { z } from "zod";
import {
  type InferenceEvent,
  type InferenceRequest,
  MAX_TOP_LOGPROBS,
  type Tensor,
  type TensorType,
} from "../../runtime/engine.ts";
import { MAX_EMBED_INPUTS, MAX_HISTORY_TURNS, OutputFormatSchema } from "../protocols/infer/messages.ts";

/**
 * The local control API's message shapes (HTTP + JSON over a Unix socket in INFERNET_HOME, mode 0600).
 * The CLI and the dashboard talk to a running node only through this. Tensors travel as base64.
 */
export const CONTROL_SOCKET = "control.sock";
/** Largest request body the control server reads (tensor batches included). */
export const MAX_CONTROL_BODY_BYTES = 64 * 1024 * 1024;
/**
 * A run stream with nothing to say sends a heartbeat line this often: Bun's server closes a connection
 * idle for 10 s, and a queued request or a slow model's first token can take longer than that.
 */
export const CONTROL_HEARTBEAT_MS = 5_000;
/** Unix socket paths longer than this do not fit in sockaddr_un on Linux. */
export const MAX_SOCKET_PATH = 100;

const TENSOR_TYPES = ["float32", "float16", "int32", "int64", "uint8", "int8", "bool"] as const;

export const WireTensorSchema = z.object({
  type: z.enum(TENSOR_TYPES),
  dims: z.array(z.number().int().nonnegative()).max(8),
  data: z.string().max(MAX_CONTROL_BODY_BYTES),
});
export type WireTensor = z.infer<typeof WireTensorSchema>;

export const RunBodySchema = z.object({
  model: z.object({ name: z.string().min(1).max(256), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  request: z.discriminatedUnion("kind", [
    z.object({
      kind: z.literal("generate"),
      prompt: z.string().max(4 * 1024 * 1024),
      chat: z.boolean().optional(),
      system: z
        .string()
        .max(1024 * 1024)
        .optional(),
      history: z
        .array(z.object({ role: z.enum(["user", "assistant"]), content: z.string().max(4 * 1024 * 1024) }))
        .max(MAX_HISTORY_TURNS)
        .optional(),
      maxTokens: z.number().int().positive().optional(),
      temperature: z.number().min(0).max(10).optional(),
      topK: z.number().int().positive().optional(),
      topP: z.number().min(0).max(1).optional(),
      seed: z.number().int().nonnegative().optional(),
      stop: z.array(z.string().min(1).max(256)).max(16).optional(),
      logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).optional(),
      format: OutputFormatSchema.optional(),
    }),
    z.object({
      kind: z.literal("embed"),
      inputs: z
        .array(
          z
            .string()
            .min(1)
            .max(4 * 1024 * 1024),
        )
        .min(1)
        .max(MAX_EMBED_INPUTS),
    }),
    z.object({
      kind: z.literal("tensor"),
      inputs: z.record(z.string().max(256), WireTensorSchema),
      outputs: z.array(z.string().max(256)).max(64).optional(),
    }),
  ]),
  /** Most the request may cost, msat (decimal): see NetworkRunOptions.maxPriceMsat. */
  maxPriceMsat: z
    .string()
    .regex(/^\d{1,19}$/)
    .optional(),
  deadlineMs: z.number().int().positive().optional(),
});
export type RunBody = z.infer<typeof RunBodySchema>;

const ARRAYS: Record<TensorType, (b: ArrayBuffer) => Tensor["data"]> = {
  float32: (b) => new Float32Array(b),
  float16: (b) => new Uint16Array(b),
  int32: (b) => new Int32Array(b),
  int64: (b) => new BigInt64Array(b),
  uint8: (b) => new Uint8Array(b),
  int8: (b) => new Int8Array(b),
  bool: (b) => new Uint8Array(b),
};

export function tensorToWire(t: Tensor): WireTensor {
  return {
    type: t.type,
    dims: t.dims,
    data: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString("base64"),
  };
}

export function tensorFromWire(w: WireTensor): Tensor {
  const bytes = Buffer.from(w.data, "base64");
  const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  return { type: w.type, dims: w.dims, data: ARRAYS[w.type](copy) };
}

export function requestToWire(request: InferenceRequest): RunBody["request"] {
  if (request.kind === "generate") {
    const { resume: _resume, ...rest } = request;
    return rest;
  }
  if (request.kind === "embed") return request;
  return {
    kind: "tensor",
    inputs: Object.fromEntries(Object.entries(request.inputs).map(([k, t]) => [k, tensorToWire(t)])),
    ...(request.outputs ? { outputs: request.outputs } : {}),
  };
}

export function requestFromWire(wire: RunBody["request"]): InferenceRequest {
  if (wire.kind !== "tensor") return wire;
  return {
    kind: "tensor",
    inputs: Object.fromEntries(Object.entries(wire.inputs).map(([k, t]) => [k, tensorFromWire(t)])),
    ...(wire.outputs ? { outputs: wire.outputs } : {}),
  };
}

/** One line of the /v1/run response stream. */
export type RunStreamLine =
  | Exclude<InferenceEvent, { type: "tensors" }>
  | { type: "tensors"; outputs: Record<string, WireTensor> }
  | { type: "provider"; peerId: string; attempt: number; resumedAt: number; satsPer1kTokens: number }
  | { type: "paid"; peerId: string; paidMsat: string }
  | { type: "error"; name: string; message: string; hint?: string }
  | { type: "heartbeat" };
