import { readFile, stat } from "node:fs/promises";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { throwIfAborted } from "../../../util/abort.ts";
import { errorMessage, FileNotFoundError, InvalidInputError } from "../../../util/errors.ts";

/**
 * Image files decoded to 8-bit pixels: PNG through pngjs, baseline and progressive JPEG through
 * jpeg-js. Sizes are checked before decoding so a hostile file cannot make us allocate gigabytes.
 */

/** Largest image file read. */
export const MAX_IMAGE_FILE_BYTES = 64 * 1024 ** 2;

/** Largest decoded image, in pixels (about 8K x 6K). */
export const MAX_IMAGE_PIXELS = 50_000_000;

/** Memory jpeg-js may use while decoding, in MB (RGBA at `MAX_IMAGE_PIXELS` plus its working set). */
const MAX_JPEG_MEMORY_MB = 512;

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] as const;
const JPEG_SOI = [0xff, 0xd8, 0xff] as const;

/** Pixels in row-major order, `channels` interleaved values (0-255) per pixel. */
export interface RawImage {
  width: number;
  height: number;
  /** 1 = grey, 3 = RGB, 4 = RGBA (alpha is ignored by preprocessing). */
  channels: 1 | 3 | 4;
  data: Uint8Array;
}

export function looksLikePng(head: Uint8Array): boolean {
  return PNG_SIGNATURE.every((b, i) => head[i] === b);
}

export function looksLikeJpeg(head: Uint8Array): boolean {
  return JPEG_SOI.every((b, i) => head[i] === b);
}

/** Decodes a PNG or JPEG file. Anything unreadable is an `InvalidInputError` naming the file. */
export async function decodeImageFile(path: string, signal?: AbortSignal): Promise<RawImage> {
  throwIfAborted(signal);
  const info = await stat(path).catch((cause: unknown) => {
    throw new FileNotFoundError(`cannot read ${path}: ${errorMessage(cause)}`, { cause });
  });
  if (info.size > MAX_IMAGE_FILE_BYTES) {
    throw new InvalidInputError(`${path} is ${info.size} bytes; images up to ${MAX_IMAGE_FILE_BYTES} bytes are read`);
  }
  const bytes = await readFile(path).catch((cause: unknown) => {
    throw new FileNotFoundError(`cannot read ${path}: ${errorMessage(cause)}`, { cause });
  });
  throwIfAborted(signal);
  return decodeImage(path, bytes);
}

export function decodeImage(name: string, bytes: Uint8Array): RawImage {
  if (looksLikePng(bytes)) return decodePng(name, bytes);
  if (looksLikeJpeg(bytes)) return decodeJpeg(name, bytes);
  throw new InvalidInputError(`${name} is not a PNG or JPEG image`, { hint: "convert it to PNG or JPEG" });
}

function decodePng(name: string, bytes: Uint8Array): RawImage {
  // IHDR is always the first chunk: width and height are big-endian at bytes 16 and 20.
  if (bytes.length >= 24) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    checkPixels(name, view.getUint32(16, false), view.getUint32(20, false));
  }
  try {
    const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return { width: png.width, height: png.height, channels: 4, data: new Uint8Array(png.data) };
  } catch (cause) {
    throw new InvalidInputError(`cannot decode image ${name}: ${errorMessage(cause)}`, { cause });
  }
}

function decodeJpeg(name: string, bytes: Uint8Array): RawImage {
  try {
    const image = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6,
      maxMemoryUsageInMB: MAX_JPEG_MEMORY_MB,
    });
    checkPixels(name, image.width, image.height);
    return { width: image.width, height: image.height, channels: 3, data: image.data };
  } catch (cause) {
    if (cause instanceof InvalidInputError) throw cause;
    throw new InvalidInputError(`cannot decode image ${name}: ${errorMessage(cause)}`, { cause });
  }
}

function checkPixels(name: string, width: number, height: number): void {
  if (width === 0 || height === 0) throw new InvalidInputError(`image ${name} is empty (${width}x${height})`);
  if (width * height > MAX_IMAGE_PIXELS) {
    throw new InvalidInputError(
      `image ${name} is ${width}x${height}; images up to ${MAX_IMAGE_PIXELS} pixels are read`,
    );
  }
}
