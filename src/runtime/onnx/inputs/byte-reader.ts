import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import { createGunzip } from "node:zlib";
import { throwIfAborted } from "../../../util/abort.ts";
import { takeBytes } from "../../../util/bytes.ts";
import { errorMessage, FileNotFoundError, InvalidInputError } from "../../../util/errors.ts";

/** gzip's two magic bytes (RFC 1952 section 2.3.1). */
const GZIP_MAGIC = [0x1f, 0x8b] as const;

/** Bytes read from a file to tell its format. */
export const SNIFF_BYTES = 16;

/** The first `SNIFF_BYTES` of a file (fewer if it is shorter). A missing file is `FileNotFoundError`. */
export async function sniff(path: string): Promise<Uint8Array> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "r");
  } catch (cause) {
    throw new FileNotFoundError(`cannot read ${path}: ${errorMessage(cause)}`, { cause });
  }
  try {
    const buffer = new Uint8Array(SNIFF_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, SNIFF_BYTES, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

export function isGzip(head: Uint8Array): boolean {
  return head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1];
}

/**
 * Reads a file front to back in exact-sized pieces, decompressing gzip on the fly, so a large
 * data set is never held in memory whole. `limit` caps the (decompressed) bytes read, which is
 * what stops a small gzip file from expanding without bound.
 */
export class ByteReader implements AsyncDisposable {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private readonly destroy: () => void;
  private readonly chunks: Uint8Array[] = [];
  private buffered = 0;
  private consumed = 0;
  private ended = false;

  constructor(
    readonly path: string,
    gzip: boolean,
    private readonly limit: number,
    private readonly signal?: AbortSignal,
  ) {
    const file = createReadStream(path);
    const stream = gzip ? file.pipe(createGunzip()) : file;
    // A gunzip stream does not forward the file's errors; this makes both surface on the next read.
    if (gzip) file.on("error", (err) => stream.destroy(err));
    this.iterator = stream[Symbol.asyncIterator]();
    this.destroy = () => {
      file.destroy();
      stream.destroy();
    };
  }

  /** Bytes handed out so far. */
  get offset(): number {
    return this.consumed;
  }

  /** Exactly `n` bytes, or fewer only where the data ends. */
  async read(n: number): Promise<Uint8Array> {
    while (this.buffered < n && !this.ended) await this.pull();
    const take = Math.min(n, this.buffered);
    const out = takeBytes(this.chunks, take, true);
    this.buffered -= take;
    this.consumed += take;
    return out;
  }

  /** Whether every byte has been read. */
  async atEnd(): Promise<boolean> {
    while (this.buffered === 0 && !this.ended) await this.pull();
    return this.buffered === 0;
  }

  private async pull(): Promise<void> {
    throwIfAborted(this.signal);
    let next: IteratorResult<Uint8Array>;
    try {
      next = await this.iterator.next();
    } catch (cause) {
      throw new InvalidInputError(`cannot read ${this.path}: ${errorMessage(cause)}`, { cause });
    }
    if (next.done) {
      this.ended = true;
      return;
    }
    if (this.consumed + this.buffered + next.value.length > this.limit) {
      throw new InvalidInputError(
        `${this.path} holds more than ${this.limit} bytes, the most Infernet reads from one input`,
      );
    }
    this.chunks.push(next.value);
    this.buffered += next.value.length;
  }

  close(): void {
    this.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}
