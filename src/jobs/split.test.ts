import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PNG } from "pngjs";
import { npyHeader } from "./npy-writer.ts";
import { planShards, type Shard } from "./records.ts";
import { parsePrompts, type Splitter, splitImages, splitPrompts } from "./split.ts";

const MNIST_IMAGES = join(import.meta.dir, "../../../shared/data/mnist/t10k-images-idx3-ubyte.gz");

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "infernet-split-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function all(splitter: Splitter): Promise<Shard[]> {
  const shards: Shard[] = [];
  for await (const shard of splitter.shards()) shards.push(shard);
  return shards;
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

describe("planShards", () => {
  test("by size, by count, and the limits", () => {
    expect(planShards(10_000, { shardSize: 500 })).toEqual({ records: 10_000, shardSize: 500, shardCount: 20 });
    expect(planShards(10, { shardSize: 3 })).toEqual({ records: 10, shardSize: 3, shardCount: 4 });
    expect(planShards(10, { shardCount: 3 })).toEqual({ records: 10, shardSize: 4, shardCount: 3 });
    expect(planShards(2, { shardCount: 5 })).toEqual({ records: 2, shardSize: 1, shardCount: 2 });
    expect(() => planShards(10, { shardSize: 2, shardCount: 2 })).toThrow(/not both/);
    expect(() => planShards(10, { shardSize: 0 })).toThrow(/positive/);
    expect(() => planShards(0)).toThrow(/1 to/);
    expect(() => planShards(1_000_000, { shardSize: 1 })).toThrow(/at most/);
  });
});

describe("splitImages", () => {
  test("the 10,000 MNIST test images in 500-record shards: 20 shards, contiguous, every image 28x28 grey", async () => {
    await using splitter = await splitImages(MNIST_IMAGES, { shardSize: 500 });
    expect(splitter.kind).toBe("images");
    expect(splitter.plan).toEqual({ records: 10_000, shardSize: 500, shardCount: 20 });
    const shards = await all(splitter);
    expect(shards).toHaveLength(20);
    let next = 0;
    for (const [i, shard] of shards.entries()) {
      expect(shard.index).toBe(i);
      expect(shard.start).toBe(next);
      expect(shard.count).toBe(500);
      if (shard.payload.kind !== "images") throw new Error("expected images");
      expect(shard.payload.images).toHaveLength(500);
      for (const image of shard.payload.images) {
        expect([image.width, image.height, image.channels, image.data.length]).toEqual([28, 28, 1, 784]);
      }
      next += shard.count;
    }
    expect(next).toBe(10_000);
  });

  test("a shard count gives near-equal shards; a record or shard over the byte limit is a typed error", async () => {
    await using byCount = await splitImages(MNIST_IMAGES, { shardCount: 3 });
    expect(byCount.plan).toEqual({ records: 10_000, shardSize: 3334, shardCount: 3 });
    expect((await all(byCount)).map((s) => [s.start, s.count])).toEqual([
      [0, 3334],
      [3334, 3334],
      [6668, 3332],
    ]);

    await using tiny = await splitImages(MNIST_IMAGES, { shardSize: 10, maxShardBytes: 500 });
    const record = await rejection(all(tiny));
    expect(record.name).toBe("RecordTooLargeError");
    expect(record.message).toContain("record 0 is 784 bytes");

    await using small = await splitImages(MNIST_IMAGES, { shardSize: 10, maxShardBytes: 4000 });
    const shard = await rejection(all(small));
    expect(shard.name).toBe("ShardTooLargeError");
    expect((shard as { hint?: string }).hint).toContain("at most about 5 records");
  });

  test("a float .npy splits into tensor rows; a folder of PNGs into images in name order", async () => {
    const rows = 7;
    const values = Float32Array.from({ length: rows * 3 }, (_, i) => i);
    const npy = join(dir, "rows.npy");
    await writeFile(npy, Buffer.concat([npyHeader("float32", [rows, 3]), new Uint8Array(values.buffer)]));
    await using tensors = await splitImages(npy, { shardSize: 3 });
    expect(tensors.kind).toBe("tensor");
    const shards = await all(tensors);
    expect(shards.map((s) => [s.start, s.count])).toEqual([
      [0, 3],
      [3, 3],
      [6, 1],
    ]);
    const last = shards[2]?.payload;
    if (last?.kind !== "tensor") throw new Error("expected a tensor");
    expect(last.tensor.dims).toEqual([1, 3]);
    expect(Array.from(last.tensor.data as Float32Array)).toEqual([18, 19, 20]);

    const folder = join(dir, "pngs");
    await mkdir(folder);
    for (const [name, shade] of [
      ["b.png", 20],
      ["a.png", 10],
      ["c.png", 30],
    ] as const) {
      const png = new PNG({ width: 2, height: 2 });
      png.data.fill(shade);
      await writeFile(join(folder, name), PNG.sync.write(png));
    }
    await using images = await splitImages(folder, { shardSize: 2 });
    const imageShards = await all(images);
    expect(imageShards.map((s) => (s.payload.kind === "images" ? s.payload.names : []))).toEqual([
      ["a.png", "b.png"],
      ["c.png"],
    ]);
    const first = imageShards[0]?.payload;
    if (first?.kind !== "images") throw new Error("expected images");
    expect(first.images[1]?.data[0]).toBe(20);
  });
});

describe("splitPrompts", () => {
  test("64 prompts with settings split into shards that keep every record and its index", async () => {
    const lines = Array.from({ length: 64 }, (_, i) =>
      JSON.stringify(i % 2 ? { prompt: `Story ${i}:`, maxTokens: 16 + i, temperature: 0 } : { prompt: `Tale ${i}` }),
    );
    const path = join(dir, "prompts.jsonl");
    await writeFile(path, `${lines.join("\n")}\n`);
    await using splitter = await splitPrompts(path, { shardSize: 10 });
    expect(splitter.plan).toEqual({ records: 64, shardSize: 10, shardCount: 7 });
    const shards = await all(splitter);
    const prompts = shards.flatMap((s) => (s.payload.kind === "prompts" ? s.payload.prompts : []));
    expect(prompts).toHaveLength(64);
    expect(prompts[3]).toEqual({ prompt: "Story 3:", maxTokens: 19, temperature: 0 });
    expect(prompts[4]).toEqual({ prompt: "Tale 4" });
    expect(shards.at(-1)).toMatchObject({ index: 6, start: 60, count: 4 });
  });

  test("a bad line is an InvalidInputError naming its line", () => {
    const bad = (text: string) => {
      try {
        parsePrompts(text, "p.jsonl");
      } catch (err) {
        expect((err as Error).name).toBe("InvalidInputError");
        return (err as Error).message;
      }
      throw new Error("expected an error");
    };
    expect(bad('{"prompt":"a"}\n\n{"prompt":"b"\n')).toMatch(/^p\.jsonl line 3 is not valid JSON/);
    expect(bad('{"prompt":"a"}\n{"text":"b"}')).toMatch(/^p\.jsonl line 2: /);
    expect(bad('{"prompt":"a","maxTokens":-1}')).toMatch(/^p\.jsonl line 1: maxTokens: /);
    expect(bad('{"prompt":""}')).toMatch(/line 1: prompt: /);
    expect(bad('"just a string"')).toMatch(/line 1: /);
    expect(bad(`{"prompt":"${"x".repeat(2 * 1024 * 1024)}"}`)).toMatch(/line 1 is longer than/);
    expect(bad("\n\n")).toBe("p.jsonl holds no prompts");
    expect(parsePrompts('{"prompt":"a"}\r\n{"prompt":"b","stop":["\\n"]}\r\n', "ok")).toEqual([
      { prompt: "a" },
      { prompt: "b", stop: ["\n"] },
    ]);
  });

  test("a prompt over the shard limit is a RecordTooLargeError, a shard over it a ShardTooLargeError, before any shard is made", async () => {
    const path = join(dir, "big.jsonl");
    await writeFile(path, `{"prompt":"short"}\n{"prompt":"${"y".repeat(500)}"}\n`);
    const err = await rejection(splitPrompts(path, { maxShardBytes: 200 }));
    expect(err.name).toBe("RecordTooLargeError");
    expect(err.message).toContain("prompt 1 is");
    const shard = await rejection(splitPrompts(path, { shardSize: 2, maxShardBytes: 520 }));
    expect(shard.name).toBe("ShardTooLargeError");
    expect(shard.message).toMatch(/^shard 0 \(2 records\) is 531 bytes/);
  });
});
