import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { fromHalfArray } from "../float16.ts";
import { readExpected } from "./expected.ts";
import { openIdx } from "./idx.ts";
import { decodeImageFile } from "./image.ts";
import { openNpy } from "./npy.ts";
import { preprocess } from "./preprocess.ts";
import { openImageInput } from "./source.ts";

const SHARED = join(import.meta.dir, "../../../../../shared");
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "infernet-inputs-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, bytes: Uint8Array | string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

function idx(dims: number[], data: Uint8Array, type = 0x08): Uint8Array {
  const header = new Uint8Array(4 + 4 * dims.length);
  const view = new DataView(header.buffer);
  header[2] = type;
  header[3] = dims.length;
  for (const [i, d] of dims.entries()) view.setUint32(4 + 4 * i, d, false);
  return Buffer.concat([header, data]);
}

/** A .npy file as numpy.save writes it (header padded so the data starts on a 64-byte boundary). */
function npy(descr: string, shape: number[], data: ArrayBufferView, version: 1 | 2 = 1, fortran = false): Uint8Array {
  const dict = `{'descr': '${descr}', 'fortran_order': ${fortran ? "True" : "False"}, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  const prefix = version === 1 ? 10 : 12;
  const pad = 64 - ((prefix + dict.length + 1) % 64);
  const header = `${dict}${" ".repeat(pad % 64)}\n`;
  const head = new Uint8Array(prefix);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const view = new DataView(head.buffer);
  if (version === 1) view.setUint16(8, header.length, true);
  else view.setUint32(8, header.length, true);
  return Buffer.concat([
    head,
    Buffer.from(header, "latin1"),
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  ]);
}

function png(width: number, height: number, rgba: number[]): Uint8Array {
  const image = new PNG({ width, height });
  image.data = Buffer.from(rgba);
  return PNG.sync.write(image);
}

async function errorOf(promise: Promise<unknown>): Promise<Error> {
  return (await promise.then(
    () => new Error("expected a failure"),
    (e: unknown) => e,
  )) as Error;
}

describe("IDX", () => {
  test("the real MNIST test set streams in batches, gzipped, with its header checked", async () => {
    await using images = await openIdx(join(SHARED, "data/mnist/t10k-images-idx3-ubyte.gz"));
    expect(images.dims).toEqual([10_000, 28, 28]);
    let records = 0;
    for (;;) {
      const chunk = await images.next(3_000);
      if (chunk.length === 0) break;
      records += chunk.length / 784;
    }
    expect(records).toBe(10_000);
  });

  test("raw and gzipped files give the same records", async () => {
    const data = Uint8Array.from({ length: 3 * 2 * 2 }, (_, i) => i);
    for (const path of [
      await file("raw.idx", idx([3, 2, 2], data)),
      await file("zipped.idx.gz", gzipSync(idx([3, 2, 2], data))),
    ]) {
      await using f = await openIdx(path);
      expect(Array.from(await f.next(2))).toEqual(Array.from(data.subarray(0, 8)));
      expect(Array.from(await f.next(2))).toEqual(Array.from(data.subarray(8)));
      expect((await f.next(2)).length).toBe(0);
    }
  });

  test("bad magic, other element types, truncated data and trailing bytes are InvalidInputErrors", async () => {
    const bad = await file(
      "bad-magic.idx",
      Buffer.concat([new Uint8Array([0x12, 0x34, 0x08, 0x01]), new Uint8Array(8)]),
    );
    let err = await errorOf(openIdx(bad));
    expect(err.name).toBe("InvalidInputError");
    expect(err.message).toContain("not an IDX file (bad magic number)");

    err = await errorOf(openIdx(await file("floats.idx", idx([1], new Uint8Array(4), 0x0d))));
    expect(err.message).toMatch(/element type 0xd; only unsigned bytes/);

    const truncated = await file("truncated.idx.gz", gzipSync(idx([5, 2, 2], new Uint8Array(13))));
    await using t = await openIdx(truncated);
    err = await errorOf(t.next(5));
    expect(err.name).toBe("InvalidInputError");
    expect(err.message).toContain("truncated: its header promises 5 records, the data ends after 3");

    await using trailing = await openIdx(await file("trailing.idx", idx([2], new Uint8Array(3))));
    err = await errorOf(trailing.next(2));
    expect(err.message).toContain("has data after its 2 records");

    err = await errorOf(
      openIdx(await file("not-gzip.gz", Buffer.concat([new Uint8Array([0x1f, 0x8b]), new Uint8Array(40).fill(7)]))),
    );
    expect(err.name).toBe("InvalidInputError");
  });
});

describe(".npy", () => {
  test("v1 and v2 headers, float32 / uint8 / float16 / int64, read by record range", async () => {
    const f32 = Float32Array.from({ length: 12 }, (_, i) => i / 4);
    for (const version of [1, 2] as const) {
      await using a = await openNpy(await file(`f32-v${version}.npy`, npy("<f4", [3, 4], f32, version)));
      expect(a.type).toBe("float32");
      expect(a.dims).toEqual([3, 4]);
      const part = await a.read(1, 2);
      expect(part.dims).toEqual([2, 4]);
      expect(Array.from(part.data as Float32Array)).toEqual(Array.from(f32.subarray(4)));
    }
    await using u8 = await openNpy(
      await file("u8.npy", npy("|u1", [2, 2, 2], Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]))),
    );
    expect(u8.type).toBe("uint8");
    expect(Array.from((await u8.read(1, 5)).data as Uint8Array)).toEqual([5, 6, 7, 8]);
    const halfBits = Uint16Array.from([0x3c00, 0xc000, 0x3800]);
    await using f16 = await openNpy(await file("f16.npy", npy("<f2", [3], halfBits)));
    const halves = await f16.read(0, 3);
    expect(halves.data.constructor).toBe(Uint16Array);
    expect(Array.from(fromHalfArray(halves.data as Uint16Array))).toEqual([1, -2, 0.5]);
    await using i64 = await openNpy(await file("i64.npy", npy("<i8", [2], BigInt64Array.from([7n, -1n]))));
    expect(Array.from((await i64.read(0, 2)).data as BigInt64Array)).toEqual([7n, -1n]);
  });

  test("truncated data, a bad magic, Fortran order, big-endian and float64 are InvalidInputErrors", async () => {
    const whole = npy("<f4", [3, 4], new Float32Array(12));
    const cases: [Uint8Array, RegExp][] = [
      [
        whole.subarray(0, whole.length - 5),
        /is truncated: shape \(3, 4\) of float32 needs 48 bytes of data, the file has 43/,
      ],
      [whole.subarray(0, 30), /truncated inside its .npy header/],
      [
        Buffer.concat([new Uint8Array([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x58, 1, 0, 0, 0])]),
        /not a .npy file \(bad magic\)/,
      ],
      [npy("<f4", [2, 2], new Float32Array(4), 1, true), /Fortran \(column-major\) order/],
      [npy(">f4", [2], new Float32Array(2)), /holds >f4 elements/],
      [npy("<f8", [2], new Float64Array(2)), /holds <f8 elements/],
      [Buffer.concat([whole, new Uint8Array(4)]), /4 bytes after its data/],
    ];
    for (const [i, [bytes, message]] of cases.entries()) {
      const err = await errorOf(openNpy(await file(`bad-${i}.npy`, bytes)));
      expect(err.name).toBe("InvalidInputError");
      expect(err.message).toMatch(message);
    }
  });
});

describe("images", () => {
  test("PNG and JPEG decode; the WinML digit is the 0-255 values of its CSV", async () => {
    const digit = await decodeImageFile(join(SHARED, "data/reference/mnist-winml/mnist_28.png"));
    expect([digit.width, digit.height, digit.channels]).toEqual([28, 28, 4]);
    const csv = (await readFile(join(SHARED, "data/reference/mnist-winml/mnist_28.csv"), "utf8"))
      .trim()
      .split(/[,\s]+/)
      .map(Number);
    expect(Array.from({ length: 784 }, (_, i) => digit.data[i * 4])).toEqual(csv);

    const rgb = Buffer.alloc(8 * 8 * 4, 0);
    for (let i = 0; i < 64; i++) rgb.set([200, 40, 10, 255], i * 4);
    const jpg = await file("red.jpg", jpeg.encode({ width: 8, height: 8, data: rgb }, 95).data);
    const decoded = await decodeImageFile(jpg);
    expect([decoded.width, decoded.height, decoded.channels]).toEqual([8, 8, 3]);
    expect(Math.abs((decoded.data[0] as number) - 200)).toBeLessThan(6);
  });

  test("an unreadable image is an InvalidInputError naming the file", async () => {
    const fake = await file("broken.png", Buffer.concat([png(2, 2, new Array(16).fill(9)).subarray(0, 40)]));
    const err = await errorOf(decodeImageFile(fake));
    expect(err.name).toBe("InvalidInputError");
    expect(err.message).toContain(fake);
    const notImage = await errorOf(decodeImageFile(await file("text.png", "hello")));
    expect(notImage.name).toBe("InvalidInputError");
    expect(notImage.message).toContain("text.png is not a PNG or JPEG image");
    expect((await errorOf(decodeImageFile(join(dir, "nope.png")))).name).toBe("FileNotFoundError");
  });

  test("a folder is read in file-name order, images only", async () => {
    const folder = join(dir, "folder");
    await mkdir(folder);
    for (const [name, v] of [
      ["b.png", 2],
      ["a.png", 1],
      ["c.jpg", 3],
    ] as const) {
      const bytes = name.endsWith(".png")
        ? png(1, 1, [v, v, v, 255])
        : jpeg.encode({ width: 1, height: 1, data: Buffer.from([v, v, v, 255]) }, 100).data;
      await writeFile(join(folder, name), bytes);
    }
    await writeFile(join(folder, "notes.txt"), "not an image");
    await using source = await openImageInput(folder);
    expect(source.format).toBe("folder");
    expect(source.records).toBe(3);
    const first = await source.next(2);
    expect(first?.names).toEqual(["a.png", "b.png"]);
    expect(first?.images?.map((i) => i.data[0])).toEqual([1, 2]);
    expect((await source.next(2))?.names).toEqual(["c.jpg"]);
    expect(await source.next(2)).toBeUndefined();
  });

  test("formats are told by content; something else is an InvalidInputError", async () => {
    const err = await errorOf(openImageInput(await file("mystery.bin", "just some text")));
    expect(err.name).toBe("InvalidInputError");
    expect(err.message).toContain("cannot tell what");
    expect((await errorOf(openImageInput(join(dir, "absent")))).name).toBe("FileNotFoundError");
    await using u8 = await openImageInput(
      await file("images.npy", npy("|u1", [2, 1, 2, 2], Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]))),
    );
    const batch = await u8.next(5);
    expect(batch?.images?.map((i) => [i.width, i.height, i.channels])).toEqual([
      [2, 2, 1],
      [2, 2, 1],
    ]);
    await using floats = await openImageInput(await file("ready.npy", npy("<f4", [1, 1, 2, 2], new Float32Array(4))));
    expect((await floats.next(5))?.tensor?.dims).toEqual([1, 1, 2, 2]);
  });
});

describe("preprocessing", () => {
  const grey = (w: number, h: number, values: number[]) => ({
    width: w,
    height: h,
    channels: 1 as const,
    data: Uint8Array.from(values),
  });

  test("scale 1/255 gives exactly pixel/255 in float32 for every byte", () => {
    const all = grey(
      16,
      16,
      Array.from({ length: 256 }, (_, i) => i),
    );
    const out = preprocess([all], { width: 16, height: 16, channels: "grey", scale: 0.00392156862745098 }, "float32");
    expect(Array.from(out.data as Float32Array)).toEqual(
      Array.from(Float32Array.from({ length: 256 }, (_, i) => i / 255)),
    );
  });

  test("channel order, mean and std, NCHW planes", () => {
    const pixel = { width: 1, height: 2, channels: 3 as const, data: Uint8Array.from([10, 20, 30, 40, 50, 60]) };
    const bgr = preprocess([pixel], { width: 1, height: 2, channels: "bgr", scale: 1 }, "float32");
    expect(bgr.dims).toEqual([1, 3, 2, 1]);
    expect(Array.from(bgr.data as Float32Array)).toEqual([30, 60, 20, 50, 10, 40]);
    const norm = preprocess(
      [pixel],
      { width: 1, height: 2, channels: "rgb", scale: 0.1, mean: [1, 2, 3], std: [2, 2, 2] },
      "float32",
    );
    expect(Array.from(norm.data as Float32Array)).toEqual(Array.from(Float32Array.from([0, 1.5, 0, 1.5, 0, 1.5])));
    const luma = preprocess(
      [{ width: 1, height: 1, channels: 3, data: Uint8Array.from([255, 0, 0]) }],
      { width: 1, height: 1, channels: "grey", scale: 1 },
      "float32",
    );
    expect((luma.data as Float32Array)[0]).toBeCloseTo(0.299 * 255, 3);
  });

  test("bilinear resize with half-pixel centres", () => {
    const src = grey(4, 4, [0, 0, 100, 100, 0, 0, 100, 100, 40, 40, 200, 200, 40, 40, 200, 200]);
    const down = preprocess([src], { width: 2, height: 2, channels: "grey", scale: 1 }, "float32");
    expect(Array.from(down.data as Float32Array)).toEqual([0, 100, 40, 200]);
    const up = preprocess([grey(2, 1, [0, 100])], { width: 4, height: 1, channels: "grey", scale: 1 }, "float32");
    expect(Array.from(up.data as Float32Array)).toEqual([0, 25, 75, 100]);
  });

  test("float16 and uint8 model inputs", () => {
    const img = grey(2, 1, [0, 255]);
    const half = preprocess([img], { width: 2, height: 1, channels: "grey", scale: 1 / 255 }, "float16");
    expect(half.data.constructor).toBe(Uint16Array);
    expect(Array.from(fromHalfArray(half.data as Uint16Array))).toEqual([0, 1]);
    const bytes = preprocess([img], { width: 2, height: 1, channels: "rgb", scale: 1 }, "uint8");
    expect(Array.from(bytes.data as Uint8Array)).toEqual([0, 255, 0, 255, 0, 255]);
  });
});

describe("expected labels", () => {
  test("IDX, .npy and text (indices or names)", async () => {
    const mnist = await readExpected(join(SHARED, "data/mnist/t10k-labels-idx1-ubyte.gz"), undefined);
    expect(mnist.length).toBe(10_000);
    expect(Array.from(mnist.subarray(0, 5))).toEqual([7, 2, 1, 0, 4]);
    const fromNpy = await readExpected(
      await file("labels.npy", npy("<i8", [3], BigInt64Array.from([2n, 0n, 1n]))),
      undefined,
    );
    expect(Array.from(fromNpy)).toEqual([2, 0, 1]);
    const fromText = await readExpected(await file("labels.txt", "2\ncat\n0\n"), ["dog", "bird", "cat"]);
    expect(Array.from(fromText)).toEqual([2, 2, 0]);
    const err = await errorOf(readExpected(await file("bad-labels.txt", "1\nunicorn\n"), ["a", "b"]));
    expect(err.name).toBe("InvalidInputError");
    expect(err.message).toContain('line 2: "unicorn"');
    const images = await errorOf(readExpected(join(SHARED, "data/mnist/t10k-images-idx3-ubyte.gz"), undefined));
    expect(images.message).toMatch(/one dimension|bytes of data/);
  });
});
