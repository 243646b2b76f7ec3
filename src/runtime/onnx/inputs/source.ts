import { readdir, stat } from "node:fs/promises";
import { extname, join } from "node:path";
import { throwIfAborted } from "../../../util/abort.ts";
import { errorMessage, FileNotFoundError, InvalidInputError } from "../../../util/errors.ts";
import type { Tensor } from "../../engine.ts";
import { isGzip, sniff } from "./byte-reader.ts";
import { looksLikeIdx, openIdx } from "./idx.ts";
import { decodeImageFile, looksLikeJpeg, looksLikePng, type RawImage } from "./image.ts";
import { looksLikeNpy, openNpy } from "./npy.ts";

/**
 * One `--input` for an image model, whatever its format: a PNG or JPEG file, a folder of them
 * (sorted by file name, byte order, so every machine sees the same order), an IDX image set (raw or
 * gzipped) or a `.npy` array. Records come out in batches, read only as they are asked for.
 * The format is told from the file's first bytes, not its name.
 */

/** Most files taken from one folder. */
export const MAX_FOLDER_IMAGES = 1_000_000;

const IMAGE_EXTENSIONS = new Set([".png", ".jpg", ".jpeg"]);

export type InputFormat = "image" | "folder" | "idx" | "npy";

export interface InputBatch {
  /** Index of the batch's first record. */
  start: number;
  /** Decoded pixels, to be preprocessed by the model's vision spec... */
  images?: RawImage[];
  /** ...or records that are already the model's input tensor (a float `.npy`). */
  tensor?: Tensor;
  /** File names (relative to the input), for inputs made of image files. */
  names?: string[];
}

export interface InputSource extends AsyncDisposable {
  readonly path: string;
  readonly format: InputFormat;
  readonly records: number;
  /** The next `count` records, or undefined once all have been read. */
  next(count: number, signal?: AbortSignal): Promise<InputBatch | undefined>;
  close(): Promise<void>;
}

/** Tells what `path` holds from its first bytes (or that it is a folder). */
export async function detectFormat(path: string): Promise<InputFormat> {
  const info = await stat(path).catch((cause: unknown) => {
    throw new FileNotFoundError(`input ${path} does not exist or cannot be read`, {
      hint: "check the --input path",
      cause,
    });
  });
  if (info.isDirectory()) return "folder";
  const head = await sniff(path);
  if (looksLikePng(head) || looksLikeJpeg(head)) return "image";
  if (looksLikeNpy(head)) return "npy";
  if (isGzip(head) || looksLikeIdx(head)) return "idx";
  throw new InvalidInputError(`cannot tell what ${path} holds`, {
    hint: "--input takes a PNG or JPEG image, a folder of them, an IDX file (.gz or raw) or a .npy array",
  });
}

export async function openImageInput(path: string, signal?: AbortSignal): Promise<InputSource> {
  throwIfAborted(signal);
  const format = await detectFormat(path);
  if (format === "image") return filesSource(path, "image", [path], [path]);
  if (format === "folder") {
    const names = await listImages(path);
    return filesSource(
      path,
      "folder",
      names.map((n) => join(path, n)),
      names,
    );
  }
  if (format === "idx") return idxSource(path, signal);
  return npySource(path, signal);
}

async function listImages(folder: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(folder);
  } catch (cause) {
    throw new FileNotFoundError(`cannot list ${folder}: ${errorMessage(cause)}`, { cause });
  }
  const names = entries.filter((n) => IMAGE_EXTENSIONS.has(extname(n).toLowerCase()) && !n.startsWith(".")).sort();
  if (names.length === 0) throw new InvalidInputError(`${folder} holds no .png, .jpg or .jpeg files`);
  if (names.length > MAX_FOLDER_IMAGES) {
    throw new InvalidInputError(
      `${folder} holds ${names.length} images; at most ${MAX_FOLDER_IMAGES} are read from one folder`,
    );
  }
  return names;
}

function filesSource(path: string, format: InputFormat, files: string[], names: string[]): InputSource {
  let read = 0;
  return {
    path,
    format,
    records: files.length,
    async next(count, signal) {
      if (read >= files.length) return undefined;
      const start = read;
      const end = Math.min(files.length, start + count);
      const images: RawImage[] = [];
      for (let i = start; i < end; i++) images.push(await decodeImageFile(files[i] as string, signal));
      read = end;
      return { start, images, names: names.slice(start, end) };
    },
    close: async () => {},
    async [Symbol.asyncDispose]() {},
  };
}

async function idxSource(path: string, signal?: AbortSignal): Promise<InputSource> {
  const idx = await openIdx(path, signal);
  const layout = imageLayout(idx.dims, "uint8");
  if (!layout) {
    idx.close();
    throw new InvalidInputError(`${path} holds IDX data of shape ${idx.dims.join("x")}, not images`, {
      hint: "image sets are N x height x width (grey) or N x height x width x channels",
    });
  }
  let read = 0;
  return {
    path,
    format: "idx",
    records: idx.dims[0] ?? 0,
    async next(count) {
      const data = await idx.next(count);
      if (data.length === 0) return undefined;
      const start = read;
      const n = data.length / idx.recordBytes;
      read += n;
      return { start, images: split(data, n, layout) };
    },
    close: async () => idx.close(),
    async [Symbol.asyncDispose]() {
      idx.close();
    },
  };
}

async function npySource(path: string, signal?: AbortSignal): Promise<InputSource> {
  const npy = await openNpy(path, signal);
  const records = npy.dims[0] ?? 1;
  const layout = imageLayout(npy.dims, npy.type);
  let read = 0;
  return {
    path,
    format: "npy",
    records,
    async next(count, sig) {
      if (read >= records) return undefined;
      const start = read;
      const tensor = await npy.read(start, count, sig);
      const n = tensor.dims[0] ?? 1;
      read += n;
      if (!layout) return { start, tensor };
      return { start, images: split(tensor.data as Uint8Array, n, layout) };
    },
    close: () => npy.close(),
    [Symbol.asyncDispose]: () => npy.close(),
  };
}

interface Layout {
  width: number;
  height: number;
  channels: 1 | 3 | 4;
  /** Channel planes (NCHW) rather than interleaved pixels (NHWC). */
  planar: boolean;
}

/** How uint8 records of these dimensions are images: N x H x W, N x H x W x C, or N x C x H x W. */
function imageLayout(dims: readonly number[], type: string): Layout | undefined {
  if (type !== "uint8") return undefined;
  const [, a, b, c] = dims as number[];
  if (dims.length === 3) return { height: a as number, width: b as number, channels: 1, planar: false };
  if (dims.length !== 4) return undefined;
  if (c === 1 || c === 3 || c === 4) return { height: a as number, width: b as number, channels: c, planar: false };
  if (a === 1 || a === 3) return { height: b as number, width: c as number, channels: a, planar: true };
  return undefined;
}

function split(data: Uint8Array, count: number, layout: Layout): RawImage[] {
  const { width, height, channels, planar } = layout;
  const size = width * height * channels;
  const images: RawImage[] = [];
  for (let i = 0; i < count; i++) {
    const record = data.subarray(i * size, (i + 1) * size);
    images.push({ width, height, channels, data: planar ? interleave(record, width * height, channels) : record });
  }
  return images;
}

function interleave(planes: Uint8Array, pixels: number, channels: number): Uint8Array {
  const out = new Uint8Array(planes.length);
  for (let c = 0; c < channels; c++)
    for (let p = 0; p < pixels; p++) out[p * channels + c] = planes[c * pixels + p] as number;
  return out;
}
