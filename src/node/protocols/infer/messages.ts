import { z } from "zod";
import type { Msat } from "../../../payments/amount.ts";
import { PAYMENT_ID, type PaymentOffer } from "../../../payments/direct.ts";
import {
  type InferenceEvent,
  type InferenceRequest,
  MAX_SCHEMA_CHARS,
  MAX_TOP_LOGPROBS,
  type Tensor,
  type TensorType,
  type Usage,
} from "../../../runtime/engine.ts";
import { ARRAY_OF, elementCount, TENSOR_TYPES } from "../../../runtime/onnx/tensors.ts";
import { InvalidInputError } from "../../../util/errors.ts";
import { ErrorMessageSchema, WIRE_VERSION } from "../../wire.ts";
import { PriceSchema } from "../capability/messages.ts";

/**
 * Messages of /infernet/infer/1.0.0. The client sends one `request` frame; the provider answers with
 * `token` frames (LLM) or one `tensors` frame (ONNX), then `done` with usage, or an `error` frame at any
 * point. Every field is bounded here; the frame size caps the total.
 *
 * Tensors travel as `{type, dims, data}` where `data` is a CBOR byte string holding the typed array's
 * elements little-endian (float16 as IEEE half bits, bool as one byte per element, as in ONNX).
 */

/** Largest request frame: ~5,000 MNIST images or ~55 float16 224x224 RGB images. */
export const MAX_REQUEST_FRAME_BYTES = 16 * 1024 ** 2;
/** Largest response frame (one `tensors` frame carries all outputs of a request). */
export const MAX_RESPONSE_FRAME_BYTES = 16 * 1024 ** 2;
export const MAX_MODEL_NAME_CHARS = 128;
export const MAX_PROMPT_CHARS = 1_000_000;
export const MAX_SYSTEM_CHARS = 100_000;
/** Earlier chat turns a request may carry (their text counts against MAX_PROMPT_CHARS). */
export const MAX_HISTORY_TURNS = 256;
/** Largest `maxTokens` (and most carried-over `resume` tokens). */
export const MAX_TOKENS = 131_072;
/** Largest token id: llama.cpp token ids are 32-bit signed. */
export const MAX_TOKEN_ID = 2 ** 31 - 1;
/** Characters of carried-over text in `resume`. */
export const MAX_RESUME_TEXT_CHARS = 2_000_000;
/** Characters of one token's text in a `logprobs` frame. */
export const MAX_LOGPROB_TEXT_CHARS = 256;
export const MAX_STOP_STRINGS = 16;
export const MAX_STOP_STRING_CHARS = 256;
export const MAX_TOP_K = 1_000_000;
export const MAX_TEMPERATURE = 10;
export const MAX_TENSORS = 64;
export const MAX_TENSOR_NAME_CHARS = 256;
export const MAX_TENSOR_DIMS = 8;
export const MAX_TENSOR_DIM = 2 ** 31 - 1;
/** One `token` frame: text of one step and the ids it decodes from (a few normally). */
export const MAX_TOKEN_TEXT_CHARS = 65_536;
export const MAX_TOKENS_PER_EVENT = 4_096;
/** Longest deadline a request may carry: a day. */
export const MAX_DEADLINE_MS = 24 * 3_600_000;

/** Error codes a provider sends (and the client reports in `RemoteInferenceError`). */
export const REMOTE_ERROR_CODES = [
  "unsupported-version",
  "bad-request",
  "model-not-served",
  "busy",
  "timeout",
  "invalid-input",
  "internal",
  "protocol",
  "payment-required",
] as const;
export type RemoteErrorCode = (typeof REMOTE_ERROR_CODES)[number];

const v = z.literal(WIRE_VERSION);
/** An amount of msat as a decimal string (CBOR readers differ on big integers). */
const msatText = z.string().regex(/^\d{1,19}$/);
const count = z.int().min(0);
const tokenIds = z.array(z.int().min(0).max(MAX_TOKEN_ID));

export const TensorSchema = z
  .object({
    type: z.enum(TENSOR_TYPES as [TensorType, ...TensorType[]]),
    dims: z.array(z.int().min(0).max(MAX_TENSOR_DIM)).max(MAX_TENSOR_DIMS),
    data: z.custom<Uint8Array>((x) => x instanceof Uint8Array, "data must be a byte string"),
  })
  .refine((t) => elementCount(t.dims) * ARRAY_OF[t.type].BYTES_PER_ELEMENT === t.data.byteLength, {
    message: "data length does not match dims x element size",
  });
export type WireTensor = z.infer<typeof TensorSchema>;

const TensorMapSchema = z
  .record(z.string().min(1).max(MAX_TENSOR_NAME_CHARS), TensorSchema)
  .refine((m) => Object.keys(m).length <= MAX_TENSORS, { message: `at most ${MAX_TENSORS} tensors` });

/** An output format (see GenerateRequest.format), its schema bounded by MAX_SCHEMA_CHARS. */
export const OutputFormatSchema = z
  .discriminatedUnion("type", [
    z.object({ type: z.literal("json_object") }),
    z.object({ type: z.literal("json_schema"), schema: z.record(z.string(), z.unknown()) }),
  ])
  .refine((f) => JSON.stringify(f).length <= MAX_SCHEMA_CHARS, { message: `over ${MAX_SCHEMA_CHARS} characters` });

const GenerateSchema = z.object({
  kind: z.literal("generate"),
  prompt: z.string().max(MAX_PROMPT_CHARS),
  chat: z.boolean().optional(),
  system: z.string().max(MAX_SYSTEM_CHARS).optional(),
  history: z
    .array(z.object({ role: z.enum(["user", "assistant"]), content: z.string().max(MAX_PROMPT_CHARS) }))
    .max(MAX_HISTORY_TURNS)
    .refine((h) => h.reduce((n, m) => n + m.content.length, 0) <= MAX_PROMPT_CHARS, {
      message: `the history is over ${MAX_PROMPT_CHARS} characters`,
    })
    .optional(),
  maxTokens: z.int().min(1).max(MAX_TOKENS).optional(),
  temperature: z.number().min(0).max(MAX_TEMPERATURE).optional(),
  topK: z.int().min(0).max(MAX_TOP_K).optional(),
  topP: z.number().min(0).max(1).optional(),
  seed: z.int().min(0).optional(),
  stop: z.array(z.string().min(1).max(MAX_STOP_STRING_CHARS)).max(MAX_STOP_STRINGS).optional(),
  logprobs: z.int().min(0).max(MAX_TOP_LOGPROBS).optional(),
  format: OutputFormatSchema.optional(),
  resume: z.object({ tokens: tokenIds.max(MAX_TOKENS), text: z.string().max(MAX_RESUME_TEXT_CHARS) }).optional(),
});

/** Texts one embedding request may carry (their characters count against MAX_PROMPT_CHARS). */
export const MAX_EMBED_INPUTS = 256;

const EmbedSchema = z.object({
  kind: z.literal("embed"),
  inputs: z
    .array(z.string().min(1).max(MAX_PROMPT_CHARS))
    .min(1)
    .max(MAX_EMBED_INPUTS)
    .refine((xs) => xs.reduce((n, x) => n + x.length, 0) <= MAX_PROMPT_CHARS, {
      message: `the inputs are over ${MAX_PROMPT_CHARS} characters`,
    }),
});

const TensorRequestSchema = z.object({
  kind: z.literal("tensor"),
  inputs: TensorMapSchema,
  outputs: z.array(z.string().min(1).max(MAX_TENSOR_NAME_CHARS)).max(MAX_TENSORS).optional(),
});

export const ModelRefSchema = z.object({
  name: z.string().min(1).max(MAX_MODEL_NAME_CHARS),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "sha256 must be 64 lowercase hex digits"),
});

export const RequestMessageSchema = z.object({
  v,
  type: z.literal("request"),
  model: ModelRefSchema,
  request: z.discriminatedUnion("kind", [GenerateSchema, TensorRequestSchema, EmbedSchema]),
  /** The client's remaining budget; the provider stops at min(this, its own cap). */
  deadlineMs: z.int().min(1).max(MAX_DEADLINE_MS).optional(),
  /** The client pays as the result streams, up to `maxMsat` at `price` (payments/direct.ts). */
  payment: z.object({ id: z.string().regex(PAYMENT_ID), maxMsat: msatText, price: PriceSchema }).optional(),
});
export type RequestMessage = z.infer<typeof RequestMessageSchema>;

const TokenMessageSchema = z.object({
  v,
  type: z.literal("token"),
  text: z.string().max(MAX_TOKEN_TEXT_CHARS),
  tokens: tokenIds.max(MAX_TOKENS_PER_EVENT),
});

const TensorsMessageSchema = z.object({ v, type: z.literal("tensors"), outputs: TensorMapSchema });

const logprob = z.number().min(-1e6).max(0);
const candidate = z.object({
  token: z.int().min(0).max(MAX_TOKEN_ID),
  text: z.string().max(MAX_LOGPROB_TEXT_CHARS),
  logprob,
});
const LogprobsMessageSchema = z.object({
  v,
  type: z.literal("logprobs"),
  tokens: z.array(candidate.extend({ top: z.array(candidate).max(MAX_TOP_LOGPROBS) })).max(MAX_TOKENS),
});

const UsageSchema = z.object({
  inputTokens: count,
  outputTokens: count,
  computeMs: z.number().min(0),
  firstOutputMs: z.number().min(0),
});

const DoneMessageSchema = z.object({
  v,
  type: z.literal("done"),
  usage: UsageSchema,
  finishReason: z.enum(["stop", "length", "aborted"]),
});

/** A paid request's bill, before its last frames: what the whole usage costs, within the budget. */
const BillMessageSchema = z.object({ v, type: z.literal("bill"), owedMsat: msatText, usage: UsageSchema });

export const ResponseMessageSchema = z.discriminatedUnion("type", [
  TokenMessageSchema,
  TensorsMessageSchema,
  LogprobsMessageSchema,
  DoneMessageSchema,
  BillMessageSchema,
  ErrorMessageSchema,
]);
export type ResponseMessage = z.infer<typeof ResponseMessageSchema>;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The tensor's elements as little-endian bytes (a view when the host is little-endian). */
export function tensorBytes(tensor: Tensor): Uint8Array {
  const view = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  return LITTLE_ENDIAN ? view : swapBytes(view, tensor.data.BYTES_PER_ELEMENT);
}

/** A typed array over `data` (copied when it is not aligned for the element size). */
export function tensorFromWire(wire: WireTensor): Tensor {
  const ArrayType = ARRAY_OF[wire.type];
  let bytes: Uint8Array = wire.data;
  if (!LITTLE_ENDIAN) bytes = swapBytes(bytes, ArrayType.BYTES_PER_ELEMENT);
  else if (bytes.byteOffset % ArrayType.BYTES_PER_ELEMENT !== 0) bytes = bytes.slice();
  return {
    type: wire.type,
    dims: wire.dims,
    data: new ArrayType(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength / ArrayType.BYTES_PER_ELEMENT),
  };
}

function swapBytes(bytes: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(bytes.byteLength);
  for (let i = 0; i < bytes.byteLength; i += size) {
    for (let j = 0; j < size; j++) out[i + j] = bytes[i + size - 1 - j] as number;
  }
  return out;
}

function tensorsToWire(tensors: Record<string, Tensor>): Record<string, WireTensor> {
  const out: Record<string, WireTensor> = {};
  for (const [name, t] of Object.entries(tensors)) out[name] = { type: t.type, dims: t.dims, data: tensorBytes(t) };
  return out;
}

function tensorsFromWire(tensors: Record<string, WireTensor>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(tensors)) out[name] = tensorFromWire(t);
  return out;
}

/** The request frame for `request` (validated by the caller's own schema use on the other side). */
export function requestMessage(
  model: { name: string; sha256: string },
  request: InferenceRequest,
  deadlineMs: number | undefined,
  payment?: PaymentOffer,
): RequestMessage {
  const body: RequestMessage["request"] =
    request.kind === "tensor"
      ? {
          kind: "tensor",
          inputs: tensorsToWire(request.inputs),
          ...(request.outputs ? { outputs: request.outputs } : {}),
        }
      : { ...request };
  return {
    v: WIRE_VERSION,
    type: "request",
    model: { name: model.name, sha256: model.sha256 },
    request: body,
    ...(deadlineMs !== undefined ? { deadlineMs } : {}),
    ...(payment ? { payment: { id: payment.id, maxMsat: payment.maxMsat.toString(), price: payment.price } } : {}),
  };
}

/** Checks that a request this node is about to send is within the protocol's limits. */
export function checkRequest(message: RequestMessage): void {
  const parsed = RequestMessageSchema.safeParse(message);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.slice(1).map(String).join(".") || "request";
    throw new InvalidInputError(`cannot send this request: ${where}: ${issue?.message ?? "invalid"}`);
  }
}

export function requestFromWire(message: RequestMessage): InferenceRequest {
  const r = message.request;
  if (r.kind !== "tensor") return r;
  return { kind: "tensor", inputs: tensorsFromWire(r.inputs), ...(r.outputs ? { outputs: r.outputs } : {}) };
}

export type EventMessage = Exclude<ResponseMessage, { type: "error" | "bill" }>;
export type BillMessage = Extract<ResponseMessage, { type: "bill" }>;

/** What a provider streams: the engine's events, and a paid request's bill. */
export type WireEvent = InferenceEvent | { type: "bill"; owedMsat: Msat; usage: Usage };

export function eventMessage(event: InferenceEvent): EventMessage;
export function eventMessage(event: WireEvent): EventMessage | BillMessage;
export function eventMessage(event: WireEvent): EventMessage | BillMessage {
  switch (event.type) {
    case "bill":
      return { v: WIRE_VERSION, type: "bill", owedMsat: event.owedMsat.toString(), usage: event.usage };
    case "token":
      return { v: WIRE_VERSION, type: "token", text: event.text, tokens: event.tokens };
    case "tensors":
      return { v: WIRE_VERSION, type: "tensors", outputs: tensorsToWire(event.outputs) };
    case "logprobs":
      return { v: WIRE_VERSION, type: "logprobs", tokens: event.tokens };
    case "done":
      return { v: WIRE_VERSION, type: "done", usage: event.usage, finishReason: event.finishReason };
  }
}

export function eventFromWire(message: EventMessage): InferenceEvent {
  switch (message.type) {
    case "token":
      return { type: "token", text: message.text, tokens: message.tokens };
    case "tensors":
      return { type: "tensors", outputs: tensorsFromWire(message.outputs) };
    case "logprobs":
      return { type: "logprobs", tokens: message.tokens };
    case "done":
      return { type: "done", usage: message.usage, finishReason: message.finishReason };
  }
}
