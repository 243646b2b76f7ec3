import type { VisionSpec } from "../../../models/catalog.ts";
import { InvalidInputError, RuntimeError } from "../../../util/errors.ts";
import type { Tensor, TensorType } from "../../engine.ts";
import { toHalf } from "../float16.ts";
import type { RawImage } from "./image.ts";

/**
 * Turns decoded images into a model's input tensor as its catalog `vision` spec describes:
 * bilinear resize to the model's size, channel order (grey, RGB or BGR) as NCHW planes, then
 * `value * scale`, then `(value - mean[c]) / std[c]`, stored in the element type the model takes.
 */

/** ITU-R BT.601 luma weights, for models that take grey input from colour images. */
const LUMA = [0.299, 0.587, 0.114] as const;

export type PixelSpec = Pick<VisionSpec, "width" | "height" | "channels" | "scale" | "mean" | "std">;

/** Input element types an image can be turned into. */
const IMAGE_TYPES: readonly TensorType[] = ["float32", "float16", "uint8"];

export function planes(spec: Pick<VisionSpec, "channels">): number {
  return spec.channels === "grey" ? 1 : 3;
}

/** A `[images.length, C, height, width]` tensor of `type`. */
export function preprocess(images: readonly RawImage[], spec: PixelSpec, type: TensorType): Tensor {
  if (!IMAGE_TYPES.includes(type)) {
    throw new RuntimeError(`the model takes ${type} input, which Infernet cannot make from images`);
  }
  const c = planes(spec);
  for (const [name, values] of [
    ["mean", spec.mean],
    ["std", spec.std],
  ] as const) {
    if (values && values.length !== c) {
      throw new RuntimeError(`the vision spec has ${values.length} ${name} values for ${c} channels`);
    }
  }
  const perImage = c * spec.width * spec.height;
  const values = new Float32Array(perImage);
  const count = images.length;
  const data =
    type === "float32"
      ? new Float32Array(count * perImage)
      : type === "float16"
        ? new Uint16Array(count * perImage)
        : new Uint8Array(count * perImage);
  images.forEach((image, i) => {
    fill(image, spec, values);
    const offset = i * perImage;
    if (data instanceof Float32Array) data.set(values, offset);
    else if (data instanceof Uint16Array)
      for (let j = 0; j < perImage; j++) data[offset + j] = toHalf(values[j] as number);
    else
      for (let j = 0; j < perImage; j++) data[offset + j] = Math.min(255, Math.max(0, Math.round(values[j] as number)));
  });
  return { type, dims: [count, c, spec.height, spec.width], data };
}

/** Writes one image's planes into `out` (length C*H*W). */
function fill(image: RawImage, spec: PixelSpec, out: Float32Array): void {
  const { width: W, height: H } = spec;
  if (image.width < 1 || image.height < 1 || image.data.length !== image.width * image.height * image.channels) {
    throw new InvalidInputError(
      `an image of ${image.width}x${image.height}x${image.channels} has ${image.data.length} bytes`,
    );
  }
  const c = planes(spec);
  const order = spec.channels === "bgr" ? [2, 1, 0] : [0, 1, 2];
  const sx = image.width / W;
  const sy = image.height / H;
  const same = image.width === W && image.height === H;
  const px = new Float64Array(3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (same) read(image, (y * image.width + x) * image.channels, px);
      else sample(image, (x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5, px);
      const at = y * W + x;
      for (let k = 0; k < c; k++) {
        const raw = spec.channels === "grey" ? luma(image, px) : (px[order[k] as number] as number);
        let v = raw * spec.scale;
        if (spec.mean) v -= spec.mean[k] as number;
        if (spec.std) v /= spec.std[k] as number;
        out[k * W * H + at] = v;
      }
    }
  }
}

/** The pixel at byte `offset` as R, G, B (grey images repeat their one value). */
function read(image: RawImage, offset: number, px: Float64Array): void {
  const d = image.data;
  if (image.channels === 1) {
    px[0] = px[1] = px[2] = d[offset] as number;
  } else {
    px[0] = d[offset] as number;
    px[1] = d[offset + 1] as number;
    px[2] = d[offset + 2] as number;
  }
}

/** Bilinear sample at a fractional position, with half-pixel centres and clamped edges. */
function sample(image: RawImage, fx: number, fy: number, px: Float64Array): void {
  const { width, height, channels, data } = image;
  const x = Math.min(Math.max(fx, 0), width - 1);
  const y = Math.min(Math.max(fy, 0), height - 1);
  const x0 = Math.floor(x);
  const y0 = Math.floor(y);
  const x1 = Math.min(x0 + 1, width - 1);
  const y1 = Math.min(y0 + 1, height - 1);
  const ax = x - x0;
  const ay = y - y0;
  for (let k = 0; k < 3; k++) {
    const ch = channels === 1 ? 0 : k;
    const p00 = data[(y0 * width + x0) * channels + ch] as number;
    const p01 = data[(y0 * width + x1) * channels + ch] as number;
    const p10 = data[(y1 * width + x0) * channels + ch] as number;
    const p11 = data[(y1 * width + x1) * channels + ch] as number;
    const top = p00 + (p01 - p00) * ax;
    const bottom = p10 + (p11 - p10) * ax;
    px[k] = top + (bottom - top) * ay;
  }
}

function luma(image: RawImage, px: Float64Array): number {
  const r = px[0] as number;
  const g = px[1] as number;
  const b = px[2] as number;
  // Grey pixels stored as RGB keep their exact value (the weights do not sum to exactly 1 in binary).
  if (image.channels === 1 || (r === g && g === b)) return r;
  return LUMA[0] * r + LUMA[1] * g + LUMA[2] * b;
}
