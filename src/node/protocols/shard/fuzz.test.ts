import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Stream } from "@libp2p/interface";
import { SHARED_MODELS, STORIES_GGUF, STORIES_SHA256 } from "../../../../test/helpers/paths.ts";
import type { LocalModel } from "../../../runtime/engine.ts";
import { createLlamaEngine, type LlamaEngine } from "../../../runtime/llama/engine.ts";
import { createOnnxEngine, type OnnxEngine } from "../../../runtime/onnx/engine.ts";
import { decode, encode, WIRE_VERSION, wireStream, writeMessage } from "../../wire.ts";
import { fuzzRandom } from "../fuzz-random.ts";
import { eventually } from "../infer/test-engines.ts";
import { connect, framed, type TestHost, testHost, varint } from "../infer/test-hosts.ts";
import { SHARD_PROTOCOL, type ShardBatchEvent, type ShardEvent, type ShardService, shardProtocol } from "./index.ts";
import {
  MAX_REQUEST_FRAME_BYTES,
  MAX_RESPONSE_FRAME_BYTES,
  MAX_SHARDS_PER_REQUEST,
  ShardResponseSchema,
} from "./messages.ts";

/**
 * Fuzz loop: hostile inputs sent raw to a real provider's /infernet/shard/1.0.0 handler over QUIC
 * (garbage, truncated, oversized, wrong-version, wrong-type, mutated, inconsistent shards). The
 * provider must answer each with an error frame or a closed stream, never crash or hang, keep serving
 * valid shards exactly, and free every slot and stream.
 */
const CASES = 400;
/** Longest wait for the provider's answer to one case. */
const REPLY_TIMEOUT_MS = 3_000;

const STORIES: LocalModel = { name: "stories260k", runtime: "llama", path: STORIES_GGUF, sha256: STORIES_SHA256 };
const MNIST: LocalModel = {
  name: "mnist-8",
  runtime: "onnx",
  path: join(SHARED_MODELS, "mnist-8.onnx"),
  sha256: "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf",
};
const REF = { name: "stories260k", sha256: STORIES_SHA256 };
const SHARD = {
  index: 1,
  start: 2,
  count: 2,
  payload: {
    kind: "prompts",
    prompts: [
      { prompt: "Once upon a time", maxTokens: 2 },
      { prompt: "A cat", maxTokens: 2 },
    ],
  },
};
const VALID = { v: WIRE_VERSION, type: "shard", model: REF, shard: SHARD, deadlineMs: 10_000 };
/** A `shards` request (several shards on one stream) holding `shards`. */
const batchOf = (shards: unknown) => ({ v: WIRE_VERSION, type: "shards", model: REF, shards, deadlineMs: 10_000 });
const numbered = (n: number) => Array.from({ length: n }, (_, index) => ({ ...SHARD, index }));
const image = (w: number, h: number, channels: number, bytes: number) => ({
  width: w,
  height: h,
  channels,
  data: new Uint8Array(bytes),
});

let llama: LlamaEngine;
let onnx: OnnxEngine;
let provider: TestHost;
let client: TestHost;
let rogue: TestHost;
/** What the rogue provider answers to a batch, as a function of the indices it was asked for. */
let rogueFrames: (indices: number[]) => Record<string, unknown>[] = () => [];

beforeAll(async () => {
  llama = createLlamaEngine({ threads: 1 });
  onnx = createOnnxEngine();
  const models = () => new Map([STORIES, MNIST].map((m) => [m.sha256 as string, m]));
  provider = await testHost({ shard: shardProtocol({ served: models, engines: { llama, onnx } }) });
  client = await testHost({ shard: shardProtocol() });
  await connect(client, provider);
  rogue = await testHost();
  await rogue.handle(SHARD_PROTOCOL, async (stream: Stream) => {
    const lp = wireStream(stream, MAX_REQUEST_FRAME_BYTES);
    const request = decode((await lp.read()).subarray()) as { shards: { index: number }[] };
    for (const frame of rogueFrames(request.shards.map((shard) => shard.index)))
      await writeMessage(lp, { v: WIRE_VERSION, ...frame } as never);
    await stream.close();
  });
  await connect(client, rogue);
  await llama.preload(STORIES);
});

afterAll(async () => {
  await Promise.all([client?.stop(), provider?.stop(), rogue?.stop()]);
  await Promise.all([llama?.dispose(), onnx?.dispose()]);
});

// Seeded, so a failing case can be replayed.
const { random, int, pick, bytes } = fuzzRandom(20261126);
const withShard = (patch: Record<string, unknown>) => ({ ...VALID, shard: { ...SHARD, ...patch } });
const mnistShard = (payload: unknown, count = 1) => ({
  ...VALID,
  model: { name: "mnist-8", sha256: MNIST.sha256 },
  shard: { index: 0, start: 0, count, payload },
});

/** Shards and envelopes the schemas must refuse, one at a time, with the right answers. */
const BAD: (() => { message: unknown; codes: string[] })[] = [
  () => ({ message: withShard({ count: 3 }), codes: ["bad-request"] }),
  () => ({ message: withShard({ count: 0 }), codes: ["bad-request"] }),
  () => ({ message: withShard({ index: -1 }), codes: ["bad-request"] }),
  () => ({ message: withShard({ index: 1.5 }), codes: ["bad-request"] }),
  () => ({ message: withShard({ start: 1e12 }), codes: ["bad-request"] }),
  () => ({ message: withShard({ payload: { kind: "audio" } }), codes: ["bad-request"] }),
  () => ({
    message: withShard({ payload: { kind: "prompts", prompts: [{ prompt: "" }] }, count: 1 }),
    codes: ["bad-request"],
  }),
  () => ({
    message: withShard({ payload: { kind: "prompts", prompts: [{ prompt: 42 }] }, count: 1 }),
    codes: ["bad-request"],
  }),
  () => ({
    message: withShard({ payload: { kind: "prompts", prompts: [{ prompt: "x", maxTokens: -1 }] }, count: 1 }),
    codes: ["bad-request"],
  }),
  () => ({
    message: withShard({ payload: { kind: "prompts", prompts: [{ prompt: "x", extra: 1 }] }, count: 1 }),
    codes: ["bad-request"],
  }),
  () => ({ message: withShard({ extra: true }), codes: ["bad-request"] }),
  () => ({ message: { ...VALID, shard: null }, codes: ["bad-request"] }),
  () => ({ message: { ...VALID, model: { name: "stories260k", sha256: "XYZ" } }, codes: ["bad-request"] }),
  () => ({ message: { ...VALID, deadlineMs: 0 }, codes: ["bad-request"] }),
  () => ({ message: { ...VALID, deadlineMs: 1e12 }, codes: ["bad-request"] }),
  () => ({ message: { ...VALID, type: pick(["partial", "done", "error", "", "SHARD"]) }, codes: ["bad-request"] }),
  () => ({ message: mnistShard({ kind: "images", images: [image(28, 28, 1, 700)] }), codes: ["bad-request"] }),
  () => ({ message: mnistShard({ kind: "images", images: [image(0, 28, 1, 0)] }), codes: ["bad-request"] }),
  () => ({ message: mnistShard({ kind: "images", images: [image(28, 28, 2, 1568)] }), codes: ["bad-request"] }),
  () => ({
    message: mnistShard({ kind: "images", images: [image(28, 28, 1, 784)], names: ["a", "b"] }),
    codes: ["bad-request"],
  }),
  () => ({
    message: mnistShard({ kind: "tensor", tensor: { type: "float32", dims: [1, 3], data: new Uint8Array(8) } }),
    codes: ["bad-request"],
  }),
  () => ({
    message: mnistShard({ kind: "tensor", tensor: { type: "complex", dims: [1], data: new Uint8Array(8) } }),
    codes: ["bad-request"],
  }),
  // Well-formed but wrong for the model: the engine's refusal, sent back.
  () => ({
    message: mnistShard({ kind: "tensor", tensor: { type: "float32", dims: [1, 3], data: new Uint8Array(12) } }),
    codes: ["invalid-input"],
  }),
  () => ({ message: mnistShard(SHARD.payload, 2), codes: ["invalid-input"] }),
  () => ({ message: mnistShard({ kind: "images", images: [image(5, 7, 3, 105)] }), codes: ["ok"] }),
  ...batchCases(),
];

/** Batches: too many shards, an index twice, one bad shard among good ones, none, not a list, and good ones. */
function batchCases(): (() => { message: unknown; codes: string[] })[] {
  return [
    () => ({ message: batchOf(numbered(MAX_SHARDS_PER_REQUEST + 1 + int(8))), codes: ["bad-request"] }),
    () => ({ message: batchOf([SHARD, { ...SHARD, start: 7 }]), codes: ["bad-request"] }),
    () => ({ message: batchOf([...numbered(2), { ...SHARD, index: 5, count: 3 }]), codes: ["bad-request"] }),
    () => ({ message: batchOf([]), codes: ["bad-request"] }),
    () => ({ message: batchOf(pick<unknown>([SHARD, null, "shards", 3])), codes: ["bad-request"] }),
    () => ({ message: { ...batchOf(numbered(2)), shard: SHARD, type: "shard" }, codes: ["ok"] }),
    () => ({ message: batchOf(numbered(1 + int(3))), codes: ["ok"] }),
  ];
}

interface Case {
  kind: string;
  bytes: Uint8Array;
  end: boolean;
  /** Right answers: an error code, "ok" (a done frame) or "none" (the stream just ends). */
  codes: string[];
}

function makeCase(): Case {
  const valid = encode(VALID);
  switch (int(10)) {
    case 0:
      return { kind: "raw garbage", bytes: bytes(int(600)), end: true, codes: ["bad-request", "none"] };
    case 1:
      return { kind: "framed garbage", bytes: framed(bytes(int(600))), end: true, codes: ["bad-request"] };
    case 2: {
      const value = pick<unknown>([42, "shard", [1, 2, 3], true, null, new Uint8Array(5), -7.5, [VALID]]);
      return { kind: "not a map", bytes: framed(encode(value)), end: true, codes: ["bad-request"] };
    }
    case 3: {
      const v = pick<unknown>([0, 2, 3, 255, "1", -1, 1.5, null, [1]]);
      return {
        kind: "wrong version",
        bytes: framed(encode({ ...VALID, v })),
        end: true,
        codes: ["unsupported-version"],
      };
    }
    case 4: {
      const bad = pick(BAD)();
      return { kind: "bad shard", bytes: framed(encode(bad.message)), end: true, codes: bad.codes };
    }
    case 5: {
      const mutated = valid.slice();
      for (let i = 0; i <= int(4); i++) mutated[int(mutated.length)] = int(256);
      // A mutation can leave a valid shard (a different prompt): then it simply runs.
      return {
        kind: "mutated",
        bytes: framed(mutated),
        end: true,
        codes: ["bad-request", "unsupported-version", "model-not-served", "invalid-input", "ok"],
      };
    }
    case 6: {
      const whole = framed(valid);
      return {
        kind: "truncated",
        bytes: whole.subarray(0, 1 + int(whole.length - 1)),
        end: true,
        codes: ["bad-request"],
      };
    }
    case 7: {
      const length = MAX_REQUEST_FRAME_BYTES + 1 + int(2 ** 40);
      return {
        kind: "oversized",
        bytes: new Uint8Array([...varint(length), ...bytes(int(64))]),
        end: random() < 0.5,
        codes: ["bad-request"],
      };
    }
    case 8: {
      let nested: unknown = "deep";
      for (let i = 0; i < 2_000 + int(20_000); i++) nested = [nested];
      return {
        kind: "deeply nested",
        bytes: framed(encode(withShard({ payload: nested }))),
        end: true,
        codes: ["bad-request"],
      };
    }
    default: {
      const sha256 = bytes(32).reduce((s, b) => s + b.toString(16).padStart(2, "0"), "");
      const other = { ...VALID, model: { name: "other", sha256 } };
      return { kind: "not served", bytes: framed(encode(other)), end: true, codes: ["model-not-served"] };
    }
  }
}

/** Sends one case raw and returns what came back: an error code, "ok" (a done frame), "none" or "hang". */
async function send(c: Case): Promise<string> {
  const dial = new AbortController();
  const stream = await client.dialProtocol(provider.peerId, SHARD_PROTOCOL, { signal: dial.signal });
  const lp = wireStream(stream, MAX_RESPONSE_FRAME_BYTES);
  try {
    stream.send(c.bytes);
    if (c.end) await stream.close();
    for (;;) {
      const reply = ShardResponseSchema.parse(
        decode((await lp.read({ signal: AbortSignal.timeout(REPLY_TIMEOUT_MS) })).subarray()),
      );
      if (reply.type === "error") return reply.code;
      if (reply.type === "done") return "ok";
    }
  } catch (err) {
    if ((err as Error).name === "TimeoutError" || (err as Error).name === "AbortError") return "hang";
    return "none";
  } finally {
    stream.abort(new Error("case over"));
  }
}

async function runValid(): Promise<string[]> {
  const shards = client.services.shard as ShardService;
  for await (const e of shards.runShard(provider.peerId, REF, SHARD as never) as AsyncIterable<ShardEvent>) {
    if (e.type === "done" && e.result.kind === "text") return e.result.outputs;
  }
  throw new Error("no text result");
}

test(`${CASES} hostile frames: the provider answers each, stays up and serves valid shards exactly`, async () => {
  const reference = await runValid();
  expect(reference).toHaveLength(2);
  const wrong: string[] = [];
  const tally = new Map<string, number>();
  for (let i = 0; i < CASES; i++) {
    const c = makeCase();
    const got = await send(c);
    tally.set(`${c.kind}: ${got}`, (tally.get(`${c.kind}: ${got}`) ?? 0) + 1);
    if (!c.codes.includes(got)) wrong.push(`case ${i} (${c.kind}): got ${got}, expected ${c.codes.join(" or ")}`);
    if (i % 100 === 99) expect(await runValid()).toEqual(reference);
  }
  expect(wrong).toEqual([]);
  expect(await runValid()).toEqual(reference);
  expect((provider.services.shard as ShardService).load()).toMatchObject({ active: 0, queued: 0 });
  const open = () =>
    provider
      .getConnections()
      .flatMap((c) => c.streams)
      .filter((s) => s.protocol === SHARD_PROTOCOL);
  expect(await eventually(() => open().length === 0, 2_000)).toBe(true);
  console.log(`shard fuzz: ${[...tally].map(([k, n]) => `${k} x${n}`).join(", ")}`);
}, 120_000);

test("every bad batch request is refused as its case says, one by one", async () => {
  for (const [i, make] of batchCases().entries()) {
    const bad = make();
    const got = await send({ kind: "batch", bytes: framed(encode(bad.message)), end: true, codes: bad.codes });
    expect(`case ${i}: ${got}`).toBe(`case ${i}: ${bad.codes.includes(got) ? got : bad.codes.join(" or ")}`);
  }
  // A good batch's stream is reset after its first done (see `send`): its slot frees once the reset lands.
  const load = () => (provider.services.shard as ShardService).load();
  expect(await eventually(() => load().active === 0 && load().queued === 0, 2_000)).toBe(true);
});

test("hostile answers to a batch: the shards done before stay done, then bad-result (or protocol)", async () => {
  const text = (shard: number, outputs: string[]) => ({ kind: "text", shard, providers: ["me"], outputs });
  const usage = { records: 2, inputTokens: 1, outputTokens: 1, computeMs: 1 };
  const whole = (shard: number) => ({ type: "partial", first: 0, result: text(shard, ["a", "b"]) });
  const done = (shard?: number) => ({ type: "done", ...(shard === undefined ? {} : { shard }), usage });
  // [what, frames for shards [a, b], shards the client saw done, the error's code]
  const cases: [string, (s: number[]) => Record<string, unknown>[], number[], string][] = [
    ["a good answer", ([a = 0, b = 0]) => [whole(a), done(a), whole(b), done(b)], [0, 1], "none"],
    ["a done for a shard not asked", ([a = 0]) => [whole(a), done(9)], [], "bad-result"],
    ["a done that names no shard", ([a = 0]) => [whole(a), done()], [], "bad-result"],
    ["a second done for one shard", ([a = 0]) => [whole(a), done(a), done(a)], [0], "bad-result"],
    ["the next shard's done first", ([a = 0, b = 0]) => [whole(a), done(b)], [], "bad-result"],
    ["a result for a shard not asked", () => [whole(9)], [], "bad-result"],
    ["the next shard's records first", ([, b = 0]) => [whole(b)], [], "bad-result"],
    ["a result after its shard's done", ([a = 0]) => [whole(a), done(a), whole(a)], [0], "bad-result"],
    ["the stream ends before every shard is done", ([a = 0]) => [whole(a), done(a)], [0], "protocol"],
  ];
  const shards = client.services.shard as ShardService;
  for (const [what, frames, wantDone, wantCode] of cases) {
    rogueFrames = frames;
    const seen: number[] = [];
    let code = "none";
    try {
      for await (const e of shards.runShards(rogue.peerId, REF, numbered(2) as never) as AsyncIterable<ShardBatchEvent>)
        if (e.type === "done") seen.push(e.shard);
    } catch (err) {
      code = (err as { code?: string }).code ?? (err as Error).name;
      if (wantCode === "protocol")
        expect((err as Error).message).toMatch(/ended before shard 1 was done \(1 of 2 done\)/);
    }
    expect(`${what}: ${seen.join()} ${code}`).toBe(`${what}: ${wantDone.join()} ${wantCode}`);
  }
});
