/**
 * Test support: writes tiny but real ONNX models (protobuf, onnx/onnx.proto) so engine tests can
 * cover shapes the shipped models lack (a free batch dimension, several inputs, float16 in and out)
 * with the real onnxruntime. Only what those models need is encoded.
 */
import { requireModel, type VisionSpec } from "../../models/catalog.ts";
import type { TensorType } from "../engine.ts";

/** A catalog model's vision spec (a test setup error if it has none). */
export function visionSpec(name: string): VisionSpec {
  const spec = requireModel(name).vision;
  if (!spec) throw new Error(`catalog model ${name} has no vision spec`);
  return spec;
}

/** onnx.proto TensorProto.DataType values. */
const ELEM_TYPE: Record<TensorType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
};

/** The ONNX IR version and default-domain opset these models declare. */
const IR_VERSION = 7;
const OPSET = 13;

export interface ValueSpec {
  name: string;
  type: TensorType;
  /** Numbers are fixed sizes, strings are symbolic (free) dimensions. */
  shape: (number | string)[];
}

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
}

export interface ConstantSpec {
  name: string;
  dims: number[];
  values: number[];
}

export interface GraphSpec {
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  nodes: NodeSpec[];
  /** float32 initializers. */
  constants?: ConstantSpec[];
}

/** The serialised ModelProto. */
export function onnxModel(graph: GraphSpec): Uint8Array {
  const graphBytes = concat([
    ...graph.nodes.map((n, i) =>
      field(
        1,
        concat([
          ...n.inputs.map((s) => str(1, s)),
          ...n.outputs.map((s) => str(2, s)),
          str(3, `node${i}`),
          str(4, n.op),
        ]),
      ),
    ),
    str(2, "infernet-test"),
    ...(graph.constants ?? []).map((c) => field(5, tensorProto(c))),
    ...graph.inputs.map((v) => field(11, valueInfo(v))),
    ...graph.outputs.map((v) => field(12, valueInfo(v))),
  ]);
  return concat([
    varintField(1, IR_VERSION),
    str(2, "infernet-test"),
    field(7, graphBytes),
    field(8, concat([str(1, ""), varintField(2, OPSET)])),
  ]);
}

function tensorProto(c: ConstantSpec): Uint8Array {
  const floats = new Uint8Array(new Float32Array(c.values).buffer);
  return concat([
    ...c.dims.map((d) => varintField(1, d)),
    varintField(2, ELEM_TYPE.float32),
    str(8, c.name),
    field(9, floats),
  ]);
}

function valueInfo(v: ValueSpec): Uint8Array {
  const dims = v.shape.map((d) => field(1, typeof d === "number" ? varintField(1, d) : str(2, d)));
  const tensorType = concat([varintField(1, ELEM_TYPE[v.type]), field(2, concat(dims))]);
  return concat([str(1, v.name), field(2, field(1, tensorType))]);
}

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function varintField(number: number, value: number): Uint8Array {
  return new Uint8Array([...varint(number << 3), ...varint(value)]);
}

/** A length-delimited field (wire type 2). */
function field(number: number, bytes: Uint8Array): Uint8Array {
  return concat([new Uint8Array([...varint((number << 3) | 2), ...varint(bytes.length)]), bytes]);
}

function str(number: number, s: string): Uint8Array {
  return field(number, new TextEncoder().encode(s));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * A model with a free batch dimension: y = 2x and s = shape(x), so a test can see that a whole batch
 * went through in one call.
 */
export const DYNAMIC_BATCH_GRAPH: GraphSpec = {
  inputs: [{ name: "x", type: "float32", shape: ["N", 3] }],
  outputs: [
    { name: "y", type: "float32", shape: ["N", 3] },
    { name: "s", type: "int64", shape: [2] },
  ],
  nodes: [
    { op: "Mul", inputs: ["x", "two"], outputs: ["y"] },
    { op: "Shape", inputs: ["x"], outputs: ["s"] },
  ],
  constants: [{ name: "two", dims: [], values: [2] }],
};
