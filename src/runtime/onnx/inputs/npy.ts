import { type FileHandle, open } from "node:fs/promises";
import { throwIfAborted } from "../../../util/abort.ts";
import { errorMessage, FileNotFoundError, InvalidInputError } from "../../../util/errors.ts";
import type { Tensor, TensorType } from "../../engine.ts";
import { ARRAY_OF, elementCount, type TensorData } from "../tensors.ts";

/**
 * NumPy `.npy` files (numpy.org/doc/stable/reference/generated/numpy.lib.format.html): magic
 * "\x93NUMPY", version, a little-endian header length (uint16 in v1, uint32 in v2), a Python dict
 * literal with descr, fortran_order and shape, then the raw elements. Records are read on demand
 * with positional reads, so a large file is never loaded whole.
 */
const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59] as const;

/** A header is a short dict; anything longer is not a file numpy wrote. */
export const MAX_NPY_HEADER_BYTES = 64 * 1024;

/** Largest .npy data read (whole or in pieces). */
export const MAX_NPY_BYTES = 4 * 1024 ** 3;

/** Element types Infernet reads (little-endian or single-byte only). */
const DESCR: Record<string, TensorType> = {
  "<f4": "float32",
  "<f2": "float16",
  "|u1": "uint8",
  "<u1": "uint8",
  "|i1": "int8",
  "<i1": "int8",
  "<i4": "int32",
  "<i8": "int64",
  "|b1": "bool",
};

export interface NpyFile extends AsyncDisposable {
  readonly path: string;
  readonly type: TensorType;
  /** The array's shape; for a batch, dimension 0 is the record count. */
  readonly dims: readonly number[];
  /** Records `start` to `start + count` along dimension 0 (the whole array for rank 0). */
  read(start: number, count: number, signal?: AbortSignal): Promise<Tensor>;
  close(): Promise<void>;
}

export function looksLikeNpy(head: Uint8Array): boolean {
  return MAGIC.every((b, i) => head[i] === b);
}

export async function openNpy(path: string, signal?: AbortSignal): Promise<NpyFile> {
  throwIfAborted(signal);
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch (cause) {
    throw new FileNotFoundError(`cannot read ${path}: ${errorMessage(cause)}`, { cause });
  }
  try {
    return await parse(path, handle);
  } catch (err) {
    await handle.close();
    throw err;
  }
}

async function parse(path: string, handle: FileHandle): Promise<NpyFile> {
  const fixed = new Uint8Array(12);
  const { bytesRead } = await handle.read(fixed, 0, 12, 0);
  if (bytesRead < 10 || !looksLikeNpy(fixed)) {
    throw new InvalidInputError(`${path} is not a .npy file (bad magic)`, { hint: "save arrays with numpy.save" });
  }
  const major = fixed[6];
  if (major !== 1 && major !== 2) {
    throw new InvalidInputError(`${path} is .npy format version ${major}; versions 1 and 2 are supported`);
  }
  const view = new DataView(fixed.buffer);
  const headerStart = major === 1 ? 10 : 12;
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  if (headerLength > MAX_NPY_HEADER_BYTES) {
    throw new InvalidInputError(
      `${path} has a ${headerLength}-byte .npy header; at most ${MAX_NPY_HEADER_BYTES} are read`,
    );
  }
  const headerBytes = new Uint8Array(headerLength);
  const got = await handle.read(headerBytes, 0, headerLength, headerStart);
  if (got.bytesRead < headerLength) throw new InvalidInputError(`${path} is truncated inside its .npy header`);
  const { type, dims } = parseHeader(path, new TextDecoder("latin1").decode(headerBytes));

  const dataStart = headerStart + headerLength;
  const itemBytes = ARRAY_OF[type].BYTES_PER_ELEMENT;
  const dataBytes = elementCount(dims) * itemBytes;
  if (dataBytes > MAX_NPY_BYTES) {
    throw new InvalidInputError(
      `${path} holds ${dataBytes} bytes of data, more than the ${MAX_NPY_BYTES} Infernet reads`,
    );
  }
  const size = (await handle.stat()).size;
  if (size < dataStart + dataBytes) {
    throw new InvalidInputError(
      `${path} is truncated: shape (${dims.join(", ")}) of ${type} needs ${dataBytes} bytes of data, the file has ${Math.max(0, size - dataStart)}`,
    );
  }
  if (size > dataStart + dataBytes) {
    throw new InvalidInputError(
      `${path} has ${size - dataStart - dataBytes} bytes after its data; the header and the data disagree`,
    );
  }
  const recordElements = dims.length ? elementCount(dims.slice(1)) : 1;
  const records = dims.length ? (dims[0] as number) : 1;
  return {
    path,
    type,
    dims,
    async read(start, count, signal) {
      throwIfAborted(signal);
      const n = Math.max(0, Math.min(count, records - start));
      const data = new ARRAY_OF[type](n * recordElements) as TensorData;
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      const position = dataStart + start * recordElements * itemBytes;
      let filled = 0;
      while (filled < bytes.length) {
        const { bytesRead: r } = await handle.read(bytes, filled, bytes.length - filled, position + filled);
        if (r === 0) throw new InvalidInputError(`${path} ended while being read (was it changed?)`);
        filled += r;
      }
      return { type, dims: dims.length ? [n, ...dims.slice(1)] : [], data };
    },
    close: () => handle.close(),
    async [Symbol.asyncDispose]() {
      await handle.close();
    },
  };
}

/** Parses the header dict, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`. */
export function parseHeader(path: string, header: string): { type: TensorType; dims: number[] } {
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]+)['"]/.exec(header)?.[1];
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header)?.[1];
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shape === undefined) {
    throw new InvalidInputError(`${path} has a malformed .npy header: ${JSON.stringify(header.trim().slice(0, 120))}`);
  }
  const type = DESCR[descr];
  if (!type) {
    throw new InvalidInputError(
      `${path} holds ${descr} elements; supported: float32, float16, uint8, int8, int32, int64, bool (little-endian)`,
      {
        hint: "convert with array.astype(numpy.float32) before numpy.save",
      },
    );
  }
  if (fortran === "True") {
    throw new InvalidInputError(`${path} is in Fortran (column-major) order; only C order is supported`, {
      hint: "save numpy.ascontiguousarray(array) instead",
    });
  }
  const parts = shape
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const dims = parts.map((s) => (/^\d+$/.test(s) ? Number(s) : Number.NaN));
  if (dims.some((d) => !Number.isSafeInteger(d)))
    throw new InvalidInputError(`${path} has a malformed .npy shape (${shape})`);
  return { type, dims };
}
