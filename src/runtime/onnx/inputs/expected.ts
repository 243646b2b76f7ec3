import { readFile, stat } from "node:fs/promises";
import { throwIfAborted } from "../../../util/abort.ts";
import { errorMessage, FileNotFoundError, InvalidInputError } from "../../../util/errors.ts";
import { isGzip, sniff } from "./byte-reader.ts";
import { looksLikeIdx, readIdx } from "./idx.ts";
import { looksLikeNpy, openNpy } from "./npy.ts";

/**
 * The expected class of each input record (`--labels`), for scoring a classifier: an IDX label
 * file (raw or gzipped), a 1-D integer `.npy`, or text with one class per line, written as its
 * index or its exact name.
 */

/** Most expected labels read (ten times ImageNet's validation set). */
export const MAX_EXPECTED_LABELS = 10_000_000;

/** Largest text labels file read. */
export const MAX_LABELS_TEXT_BYTES = 256 * 1024 ** 2;

/** Class indices, one per record. */
export async function readExpected(
  path: string,
  classNames: readonly string[] | undefined,
  signal?: AbortSignal,
): Promise<Int32Array> {
  throwIfAborted(signal);
  const info = await stat(path).catch((cause: unknown) => {
    throw new FileNotFoundError(`labels file ${path} does not exist or cannot be read`, {
      hint: "check the --labels path",
      cause,
    });
  });
  if (!info.isFile()) throw new InvalidInputError(`--labels ${path} is not a file`);
  const head = await sniff(path);
  if (isGzip(head) || looksLikeIdx(head)) return fromIdx(path, signal);
  if (looksLikeNpy(head)) return fromNpy(path, signal);
  return fromText(path, info.size, classNames);
}

async function fromIdx(path: string, signal?: AbortSignal): Promise<Int32Array> {
  const { dims, data } = await readIdx(path, MAX_EXPECTED_LABELS, signal);
  if (dims.length !== 1) {
    throw new InvalidInputError(`${path} is IDX data of shape ${dims.join("x")}; a label file has one dimension`, {
      hint: "did you swap --input and --labels?",
    });
  }
  return Int32Array.from(data);
}

async function fromNpy(path: string, signal?: AbortSignal): Promise<Int32Array> {
  await using npy = await openNpy(path, signal);
  if (npy.dims.length !== 1 || !["uint8", "int8", "int32", "int64"].includes(npy.type)) {
    throw new InvalidInputError(`${path} holds ${npy.type}[${npy.dims.join(",")}]; labels are a 1-D integer array`);
  }
  const count = npy.dims[0] as number;
  if (count > MAX_EXPECTED_LABELS)
    throw new InvalidInputError(`${path} holds ${count} labels; at most ${MAX_EXPECTED_LABELS} are read`);
  const { data } = await npy.read(0, count, signal);
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const v = Number(data[i] as number | bigint);
    if (!Number.isSafeInteger(v) || v < 0 || v > 0x7fffffff)
      throw new InvalidInputError(`${path}: label ${i} is ${v}, not a class index`);
    out[i] = v;
  }
  return out;
}

async function fromText(path: string, size: number, classNames: readonly string[] | undefined): Promise<Int32Array> {
  if (size > MAX_LABELS_TEXT_BYTES)
    throw new InvalidInputError(`${path} is ${size} bytes; labels text up to ${MAX_LABELS_TEXT_BYTES} bytes is read`);
  const text = await readFile(path, "utf8").catch((cause: unknown) => {
    throw new FileNotFoundError(`cannot read ${path}: ${errorMessage(cause)}`, { cause });
  });
  const byName = new Map(classNames?.map((n, i) => [n, i]));
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === "") lines.pop();
  if (lines.length > MAX_EXPECTED_LABELS)
    throw new InvalidInputError(`${path} holds more than ${MAX_EXPECTED_LABELS} labels`);
  const out = new Int32Array(lines.length);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    const index = /^\d+$/.test(line) ? Number(line) : byName.get(line);
    if (index === undefined || index > 0x7fffffff) {
      throw new InvalidInputError(
        `${path} line ${i + 1}: "${line.slice(0, 80)}" is neither a class index nor a class name`,
      );
    }
    out[i] = index;
  });
  return out;
}
