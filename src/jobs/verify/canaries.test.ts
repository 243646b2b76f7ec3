import { expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../../test/helpers/paths.ts";
import { encode } from "../../node/wire.ts";
import { Store } from "../../store/db.ts";
import type { Shard, ShardPayload, ShardResult } from "../records.ts";
import { shardToWire } from "../shard-codec.ts";
import { CanaryPool, canaryCount, checkCanaries, MAX_POOL_PER_MODEL, mixCanaries, recordShape } from "./canaries.ts";
import { payloadCount, pickPayload, pickResult } from "./records.ts";

const SHA = "cd".repeat(32);

/** A tensor shard whose record i is a row of 4 floats all equal to i, and its honest result: each row doubled. */
function tensorShard(n: number, first = 0): Shard {
  const data = new Float32Array(n * 4);
  for (let i = 0; i < n; i++) data.fill(first + i, i * 4, i * 4 + 4);
  return {
    index: 3,
    start: 30,
    count: n,
    payload: { kind: "tensor", tensor: { type: "float32", dims: [n, 4], data } },
  };
}

function honest(shard: Shard): ShardResult {
  const t = (shard.payload as Extract<ShardPayload, { kind: "tensor" }>).tensor;
  const data = Float32Array.from(t.data as Float32Array, (x) => 2 * x);
  return { kind: "tensor", shard: shard.index, providers: ["p"], output: { type: "float32", dims: [...t.dims], data } };
}

function pool(path: string): { store: Store; pool: CanaryPool } {
  const store = Store.openFile(join(path, "state.db"));
  return { store, pool: new CanaryPool(store) };
}

test("canaries mixed into a shard come out of an honest result right, leaving the shard's own result", () => {
  using dir = tempDir();
  const { store, pool: canaries } = pool(dir.path);
  const known = tensorShard(20, 1000);
  for (let i = 0; i < 20; i++) {
    const record = pickPayload(known.payload, [i]);
    canaries.add(SHA, record, pickResult(honest(known), [i]), "self");
  }
  const shard = tensorShard(50);
  const drawn = canaries.draw(SHA, recordShape(shard.payload), 5);
  expect(drawn).toHaveLength(5);
  const { shard: sent, mix } = mixCanaries(shard, drawn);
  expect(sent.count).toBe(55);
  expect(sent.index).toBe(shard.index);
  expect(mix.positions).toHaveLength(5);
  // Every record on the wire has the same size and type: nothing marks a canary. The shard as sent
  // encodes to exactly as many bytes as a shard of 55 real records.
  expect((sent.payload as Extract<ShardPayload, { kind: "tensor" }>).tensor.dims).toEqual([55, 4]);
  expect(encode(shardToWire(sent)).byteLength).toBe(encode(shardToWire(tensorShard(55))).byteLength);
  const check = checkCanaries(honest(sent), mix);
  expect(check.right).toBe(5);
  expect(check.wrong).toEqual([]);
  expect(check.result).toEqual(honest(shard));
  store.close();
});

test("a wrong answer on a canary is caught however the shard's own records were answered", () => {
  using dir = tempDir();
  const { store, pool: canaries } = pool(dir.path);
  const known = tensorShard(4, 500);
  for (let i = 0; i < 4; i++)
    canaries.add(SHA, pickPayload(known.payload, [i]), pickResult(honest(known), [i]), "self");
  const shard = tensorShard(10);
  const { shard: sent, mix } = mixCanaries(shard, canaries.draw(SHA, recordShape(shard.payload), 2));
  const result = honest(sent);
  const position = mix.positions[1] as number;
  (result as Extract<ShardResult, { kind: "tensor" }>).output.data[position * 4] = -1;
  const check = checkCanaries(result, mix);
  expect(check.right).toBe(1);
  expect(check.wrong.map((w) => w.position)).toEqual([position]);
  store.close();
});

test("the pool draws the least used first, skips other shapes, and keeps at most its cap", () => {
  using dir = tempDir();
  const { store, pool: canaries } = pool(dir.path);
  const known = tensorShard(MAX_POOL_PER_MODEL + 10, 0);
  const result = honest(known);
  for (let i = 0; i < payloadCount(known.payload); i++) {
    canaries.add(SHA, pickPayload(known.payload, [i]), pickResult(result, [i]), "self");
  }
  const shape = recordShape(known.payload);
  expect(canaries.size(SHA, shape)).toBe(MAX_POOL_PER_MODEL);
  expect(canaries.size(SHA, "tensor:float32:8")).toBe(0);
  const first = canaries.draw(SHA, shape, MAX_POOL_PER_MODEL / 2).map((c) => c.id);
  const second = canaries.draw(SHA, shape, MAX_POOL_PER_MODEL / 2).map((c) => c.id);
  expect(new Set([...first, ...second]).size).toBe(MAX_POOL_PER_MODEL);
  store.close();
});

test("prompt canaries must share the shard's generation settings; counts scale with the shard", () => {
  const a: ShardPayload = { kind: "prompts", prompts: [{ prompt: "x", maxTokens: 32 }] };
  const b: ShardPayload = { kind: "prompts", prompts: [{ prompt: "y", maxTokens: 32 }] };
  const c: ShardPayload = { kind: "prompts", prompts: [{ prompt: "y", maxTokens: 64 }] };
  expect(recordShape(a)).toBe(recordShape(b));
  expect(recordShape(a)).not.toBe(recordShape(c));
  expect(canaryCount(1)).toBe(1);
  expect(canaryCount(1000)).toBe(8);
  expect(canaryCount(300)).toBe(3);
});

test("a canary's position is uniform over the shard: no place in the stream gives it away", () => {
  using dir = tempDir();
  const { store, pool: canaries } = pool(dir.path);
  const known = tensorShard(1, 1000);
  canaries.add(SHA, pickPayload(known.payload, [0]), pickResult(honest(known), [0]), "self");
  const [canary] = canaries.draw(SHA, recordShape(known.payload), 1);
  const MIXES = 2_000;
  const deciles = new Array<number>(10).fill(0);
  for (let i = 0; i < MIXES; i++) {
    const { mix } = mixCanaries(tensorShard(99), [canary!]);
    deciles[Math.floor((mix.positions[0] as number) / 10)]! += 1;
  }
  // 200 expected per decile; 140..260 is more than 4 standard deviations either way.
  for (const n of deciles) expect(n).toBeGreaterThan(140);
  for (const n of deciles) expect(n).toBeLessThan(260);
  store.close();
});
