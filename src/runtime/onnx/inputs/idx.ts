import { InvalidInputError } from "../../../util/errors.ts";
import { ByteReader, isGzip, sniff } from "./byte-reader.ts";

/**
 * IDX files (the MNIST format, yann.lecun.com/exdb/mnist): a 4-byte magic (0, 0, element type,
 * dimension count), big-endian uint32 sizes, then the elements in C order. Read as a stream, raw
 * or gzipped; only unsigned bytes (type 0x08), which is what image and label sets use.
 */
export const IDX_UBYTE = 0x08;

/** More dimensions than any image set uses (records, height, width, channels). */
export const MAX_IDX_DIMS = 4;

/** Largest decompressed IDX file read (the 60,000 MNIST training images are 47 MB). */
export const MAX_IDX_BYTES = 2 * 1024 ** 3;

/** Largest single record (one image) in an IDX file. */
export const MAX_IDX_RECORD_BYTES = 64 * 1024 ** 2;

export interface IdxFile extends AsyncDisposable {
  readonly path: string;
  /** Sizes from the header; dimension 0 is the record count. */
  readonly dims: readonly number[];
  /** Bytes per record. */
  readonly recordBytes: number;
  /**
   * The next `count` records (fewer at the end, none once all are read) as one buffer. After the
   * last record the file must end: extra or missing bytes are an `InvalidInputError`.
   */
  next(count: number): Promise<Uint8Array>;
  close(): void;
}

/** Whether these first bytes look like an uncompressed IDX ubyte file. */
export function looksLikeIdx(head: Uint8Array): boolean {
  return (
    head[0] === 0 && head[1] === 0 && head[2] === IDX_UBYTE && (head[3] ?? 0) >= 1 && (head[3] ?? 0) <= MAX_IDX_DIMS
  );
}

export async function openIdx(path: string, signal?: AbortSignal): Promise<IdxFile> {
  const head = await sniff(path);
  const reader = new ByteReader(path, isGzip(head), MAX_IDX_BYTES, signal);
  try {
    const dims = await readHeader(path, reader);
    return records(path, reader, dims);
  } catch (err) {
    reader.close();
    throw err;
  }
}

/** Reads a whole (small) IDX file, e.g. labels, bounded by `maxBytes`. */
export async function readIdx(
  path: string,
  maxBytes: number,
  signal?: AbortSignal,
): Promise<{ dims: number[]; data: Uint8Array }> {
  await using file = await openIdx(path, signal);
  const total = (file.dims[0] ?? 0) * file.recordBytes;
  if (total > maxBytes)
    throw new InvalidInputError(`${path} holds ${total} bytes of data; at most ${maxBytes} are read here`);
  const data = await file.next(file.dims[0] ?? 0);
  return { dims: [...file.dims], data };
}

async function readHeader(path: string, reader: ByteReader): Promise<number[]> {
  const magic = await reader.read(4);
  if (magic.length < 4 || magic[0] !== 0 || magic[1] !== 0) {
    throw new InvalidInputError(`${path} is not an IDX file (bad magic number)`, {
      hint: "IDX files start with two zero bytes, a type byte and a dimension count (the MNIST format)",
    });
  }
  if (magic[2] !== IDX_UBYTE) {
    throw new InvalidInputError(
      `${path} is an IDX file of element type 0x${(magic[2] ?? 0).toString(16)}; only unsigned bytes (0x08) are supported`,
    );
  }
  const rank = magic[3] ?? 0;
  if (rank < 1 || rank > MAX_IDX_DIMS) {
    throw new InvalidInputError(`${path} declares ${rank} dimensions; IDX inputs have 1 to ${MAX_IDX_DIMS}`);
  }
  const raw = await reader.read(4 * rank);
  if (raw.length < 4 * rank) throw new InvalidInputError(`${path} ends inside its IDX header`);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(i * 4, false));
  if (dims.some((d) => d === 0)) throw new InvalidInputError(`${path} has an empty dimension (${dims.join("x")})`);
  const recordBytes = dims.slice(1).reduce((a, b) => a * b, 1);
  if (recordBytes > MAX_IDX_RECORD_BYTES) {
    throw new InvalidInputError(
      `${path} has records of ${recordBytes} bytes; at most ${MAX_IDX_RECORD_BYTES} are supported`,
    );
  }
  if ((dims[0] ?? 0) * recordBytes > MAX_IDX_BYTES) {
    throw new InvalidInputError(
      `${path} declares ${dims.join("x")} bytes, more than the ${MAX_IDX_BYTES} Infernet reads`,
    );
  }
  return dims;
}

function records(path: string, reader: ByteReader, dims: number[]): IdxFile {
  const total = dims[0] ?? 0;
  const recordBytes = dims.slice(1).reduce((a, b) => a * b, 1);
  let read = 0;
  return {
    path,
    dims,
    recordBytes,
    async next(count) {
      const n = Math.min(count, total - read);
      if (n <= 0) return new Uint8Array(0);
      const data = await reader.read(n * recordBytes);
      if (data.length < n * recordBytes) {
        const whole = read + Math.floor(data.length / recordBytes);
        throw new InvalidInputError(
          `${path} is truncated: its header promises ${total} records, the data ends after ${whole}`,
        );
      }
      read += n;
      if (read === total && !(await reader.atEnd())) {
        throw new InvalidInputError(`${path} has data after its ${total} records; the header and the data disagree`);
      }
      return data;
    },
    close: () => reader.close(),
    async [Symbol.asyncDispose]() {
      reader.close();
    },
  };
}
