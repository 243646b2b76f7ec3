import { describe, expect, test } from "bun:test";
import { msat } from "../../../payments/amount.ts";
import type { InferenceEvent, Tensor } from "../../../runtime/engine.ts";
import { decode, encode, parseMessage } from "../../wire.ts";
import {
  checkRequest,
  eventFromWire,
  eventMessage,
  MAX_PROMPT_CHARS,
  MAX_TENSOR_DIMS,
  RequestMessageSchema,
  ResponseMessageSchema,
  requestFromWire,
  requestMessage,
  TensorSchema,
  tensorBytes,
  tensorFromWire,
} from "./messages.ts";

const SHA = "0123456789abcdef".repeat(4);
const MODEL = { name: "m", sha256: SHA };

const tensors: Tensor[] = [
  { type: "float32", dims: [2, 2], data: new Float32Array([1.5, -2, 3.25, Number.MIN_VALUE]) },
  { type: "float16", dims: [3], data: new Uint16Array([0x3c00, 0xc000, 0x7bff]) },
  { type: "int32", dims: [2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1]) },
  { type: "int64", dims: [2], data: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]) },
  { type: "uint8", dims: [1, 3], data: new Uint8Array([0, 128, 255]) },
  { type: "int8", dims: [2], data: new Int8Array([-128, 127]) },
  { type: "bool", dims: [2], data: new Uint8Array([0, 1]) },
  { type: "float32", dims: [0, 4], data: new Float32Array(0) },
  { type: "float32", dims: [], data: new Float32Array([7]) },
];

/** Encodes `value` as a frame and reads it back with `schema`, as the other side would. */
function overTheWire<T>(value: unknown, read: (bytes: Uint8Array) => T): T {
  return read(encode(value));
}

describe("tensors on the wire", () => {
  test("every element type round-trips bit-exactly, little-endian", () => {
    for (const t of tensors) {
      const wire = overTheWire({ type: t.type, dims: t.dims, data: tensorBytes(t) }, (b) =>
        TensorSchema.parse(decode(b)),
      );
      const back = tensorFromWire(wire);
      expect(back.type).toBe(t.type);
      expect(back.dims).toEqual(t.dims);
      expect(back.data.constructor).toBe(t.data.constructor);
      expect(Array.from(back.data as ArrayLike<number | bigint>)).toEqual(
        Array.from(t.data as ArrayLike<number | bigint>),
      );
    }
    // Little-endian on the wire whatever the host: 1.0f is 00 00 80 3f.
    expect(Array.from(tensorBytes({ type: "float32", dims: [1], data: new Float32Array([1]) }))).toEqual([
      0, 0, 0x80, 0x3f,
    ]);
  });

  test("data at an odd offset is copied into an aligned array", () => {
    const bytes = new Uint8Array(9);
    new DataView(bytes.buffer).setFloat32(1, 2.5, true);
    new DataView(bytes.buffer).setFloat32(5, -1, true);
    const t = tensorFromWire({ type: "float32", dims: [2], data: bytes.subarray(1) });
    expect(Array.from(t.data as Float32Array)).toEqual([2.5, -1]);
  });

  test("dims x element size must equal the bytes, within the rank and size limits", () => {
    const bad = [
      { type: "float32", dims: [3], data: new Uint8Array(8) },
      { type: "int64", dims: [1], data: new Uint8Array(4) },
      { type: "float32", dims: [-1], data: new Uint8Array(0) },
      { type: "float32", dims: [1.5], data: new Uint8Array(4) },
      { type: "float32", dims: [2 ** 31], data: new Uint8Array(0) },
      { type: "float32", dims: Array(MAX_TENSOR_DIMS + 1).fill(1), data: new Uint8Array(4) },
      { type: "float32", dims: [2 ** 30, 2 ** 30, 2 ** 30, 0.5], data: new Uint8Array(4) },
      { type: "float64", dims: [1], data: new Uint8Array(8) },
      { type: "float32", dims: [1], data: [0, 0, 0, 0] },
    ];
    for (const t of bad) expect(TensorSchema.safeParse(t).success).toBe(false);
  });
});

describe("request and event frames", () => {
  test("a generate request with every field survives encoding and validation", () => {
    const request = {
      kind: "generate" as const,
      prompt: "Once",
      chat: true,
      system: "be brief",
      maxTokens: 7,
      temperature: 0.5,
      topK: 40,
      topP: 0.9,
      seed: 3,
      stop: ["\n"],
      resume: { tokens: [1, 2], text: "ab" },
    };
    const msg = requestMessage(MODEL, request, 1234);
    const back = overTheWire(msg, (b) => parseMessage(b, RequestMessageSchema));
    expect(back.deadlineMs).toBe(1234);
    expect(back.model).toEqual(MODEL);
    expect(requestFromWire(back)).toEqual(request);
  });

  test("a tensor request carries its tensors and output names", () => {
    const inputs = { a: tensors[0] as Tensor, b: tensors[3] as Tensor };
    const msg = requestMessage(MODEL, { kind: "tensor", inputs, outputs: ["y"] }, undefined);
    const back = requestFromWire(overTheWire(msg, (b) => parseMessage(b, RequestMessageSchema)));
    expect(back).toEqual({ kind: "tensor", inputs, outputs: ["y"] });
  });

  test("checkRequest refuses what the provider would refuse, before anything is sent", () => {
    const cases = [
      requestMessage(MODEL, { kind: "generate", prompt: "x".repeat(MAX_PROMPT_CHARS + 1) }, undefined),
      requestMessage({ name: "m", sha256: "ABC" }, { kind: "generate", prompt: "x" }, undefined),
      requestMessage(MODEL, { kind: "generate", prompt: "x", stop: Array(17).fill("s") }, undefined),
      requestMessage(MODEL, { kind: "generate", prompt: "x", maxTokens: 0 }, undefined),
      requestMessage(MODEL, { kind: "generate", prompt: "x", resume: { tokens: [-1], text: "" } }, undefined),
    ];
    for (const msg of cases) {
      let error: unknown;
      try {
        checkRequest(msg);
      } catch (err) {
        error = err;
      }
      expect((error as Error)?.name).toBe("InvalidInputError");
    }
  });

  test("events survive encoding and validation", () => {
    const events: InferenceEvent[] = [
      { type: "token", text: " Lily", tokens: [365, 2] },
      { type: "tensors", outputs: { y: tensors[0] as Tensor } },
      {
        type: "done",
        usage: { inputTokens: 6, outputTokens: 2, computeMs: 1.5, firstOutputMs: 0.2 },
        finishReason: "length",
      },
    ];
    for (const e of events) {
      const back = overTheWire(eventMessage(e), (b) => parseMessage(b, ResponseMessageSchema));
      if (back.type === "error" || back.type === "bill") throw new Error(`unexpected ${back.type} frame`);
      expect(eventFromWire(back)).toEqual(e);
    }
  });

  test("a bill and a payment offer survive encoding and validation; a bad id or amount is rejected", () => {
    const usage = { inputTokens: 6, outputTokens: 2, computeMs: 1.5, firstOutputMs: 0.2 };
    const bill = overTheWire(eventMessage({ type: "bill", owedMsat: msat(12_345), usage }), (b) =>
      parseMessage(b, ResponseMessageSchema),
    );
    expect(bill).toEqual({ v: 1, type: "bill", owedMsat: "12345", usage });
    const offer = { id: "ab".repeat(16), maxMsat: msat(50_000), price: { tokensOut: 2_000 } };
    const request = requestMessage(MODEL, { kind: "generate", prompt: "hi" }, 1_000, offer);
    expect(RequestMessageSchema.parse(request).payment).toEqual({ id: offer.id, maxMsat: "50000", price: offer.price });
    for (const payment of [
      { ...request.payment, id: "not-hex" },
      { ...request.payment, maxMsat: "-1" },
      { ...request.payment, maxMsat: "1.5" },
      { ...request.payment, price: { tokensOut: -1 } },
      { ...request.payment, price: { bananas: 1 } },
    ]) {
      expect(RequestMessageSchema.safeParse({ ...request, payment }).success).toBe(false);
    }
  });
});
