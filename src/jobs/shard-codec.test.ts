import { describe, expect, test } from "bun:test";
import { rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode, encode } from "cborg";
import { npyHeader } from "./npy-writer.ts";
import type { Shard, ShardResult } from "./records.ts";
import { resultFromWire, resultToWire, shardFromWire, shardToWire } from "./shard-codec.ts";
import { splitImages } from "./split.ts";

const MNIST_IMAGES = join(import.meta.dir, "../../../shared/data/mnist/t10k-images-idx3-ubyte.gz");

/** Through real CBOR bytes, as a peer would send them. */
function viaCbor(value: unknown): unknown {
  return decode(encode(value));
}

function failure(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected an error");
}

describe("shards and results through CBOR", () => {
  test("an MNIST image shard, a tensor shard and a prompts shard come back equal", async () => {
    await using splitter = await splitImages(MNIST_IMAGES, { shardSize: 500 });
    const iterator = splitter.shards();
    await iterator.next();
    const second = (await iterator.next()).value as Shard;
    await iterator.return(undefined);
    const back = shardFromWire(viaCbor(shardToWire(second)));
    expect(back).toMatchObject({ index: 1, start: 500, count: 500 });
    if (back.payload.kind !== "images" || second.payload.kind !== "images") throw new Error("expected images");
    expect(back.payload.images[499]).toEqual(second.payload.images[499] as never);

    const path = join(tmpdir(), `infernet-codec-${process.pid}.npy`);
    await writeFile(
      path,
      Buffer.concat([npyHeader("float32", [4, 2]), new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]).buffer)]),
    );
    await using rows = await splitImages(path, { shardSize: 2 });
    for await (const shard of rows.shards()) {
      const copy = shardFromWire(viaCbor(shardToWire(shard)));
      if (copy.payload.kind !== "tensor") throw new Error("expected a tensor");
      expect(copy.payload.tensor.data).toBeInstanceOf(Float32Array);
      expect(copy).toEqual(shard);
    }
    await rm(path, { force: true });

    const prompts: Shard = {
      index: 3,
      start: 30,
      count: 2,
      payload: { kind: "prompts", prompts: [{ prompt: "a" }, { prompt: "b", maxTokens: 4 }] },
    };
    expect(shardFromWire(viaCbor(shardToWire(prompts)))).toEqual(prompts);
  });

  test("malformed shards are InvalidInputErrors", () => {
    const image = { width: 2, height: 2, channels: 1, data: new Uint8Array(4) };
    const shard = (payload: unknown, count = 1) => ({ index: 0, start: 0, count, payload });
    const bad: [unknown, RegExp][] = [
      [shard({ kind: "images", images: [image] }, 2), /declares 2 records and holds 1/],
      [shard({ kind: "images", images: [{ ...image, data: new Uint8Array(3) }] }), /image data length/],
      [shard({ kind: "prompts", prompts: [{ prompt: "a", evil: 1 }] }), /payload.prompts.0/],
      [
        shard({ kind: "tensor", tensor: { type: "float32", dims: [1, 2], data: new Uint8Array(4) } }),
        /tensor data length/,
      ],
      [{ ...shard({ kind: "prompts", prompts: [{ prompt: "a" }] }), index: -1 }, /index/],
      ["not a shard", /malformed shard/],
    ];
    for (const [value, message] of bad) {
      const err = failure(() => shardFromWire(value));
      expect(err.name).toBe("InvalidInputError");
      expect(err.message).toMatch(message);
    }
    const big = shard({ kind: "images", images: [{ width: 10, height: 10, channels: 1, data: new Uint8Array(100) }] });
    expect(failure(() => shardFromWire(big, 50)).message).toBe("shard 0 is 100 bytes; at most 50");
  });

  test("results round trip; malformed ones are ResultShapeErrors", () => {
    const logits = new Float32Array([0.5, -1, 2, 3]);
    const tensor: ShardResult = {
      kind: "tensor",
      shard: 2,
      providers: ["p1", "p2"],
      output: { type: "float32", dims: [2, 2], data: logits },
    };
    const back = resultFromWire(viaCbor(resultToWire(tensor)));
    expect(back).toEqual(tensor);
    const text: ShardResult = { kind: "text", shard: 0, providers: ["p"], outputs: ["once", "upon"] };
    expect(resultFromWire(viaCbor(resultToWire(text)))).toEqual(text);
    for (const value of [
      { ...text, providers: [] },
      { ...text, outputs: [1] },
      { kind: "tensor", shard: 0, providers: ["p"], output: { type: "float32", dims: [3], data: new Uint8Array(4) } },
      { kind: "other" },
    ]) {
      expect(failure(() => resultFromWire(value)).name).toBe("ResultShapeError");
    }
    expect(failure(() => resultFromWire(resultToWire(tensor), 8)).message).toContain("16 bytes of output; at most 8");
  });
});
