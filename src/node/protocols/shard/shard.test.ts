import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { Stream } from "@libp2p/interface";
import { MNIST_DIR, SHARED_MODELS, STORIES_GGUF, STORIES_SHA256 } from "../../../../test/helpers/paths.ts";
import type { PromptRecord, Shard } from "../../../jobs/records.ts";
import type { Engine, InferenceRequest, LocalModel, RunOptions, Tensor } from "../../../runtime/engine.ts";
import { createLlamaEngine, type LlamaEngine } from "../../../runtime/llama/engine.ts";
import { createOnnxEngine, type OnnxEngine } from "../../../runtime/onnx/engine.ts";
import type { RawImage } from "../../../runtime/onnx/inputs/image.ts";
import { preprocess } from "../../../runtime/onnx/inputs/preprocess.ts";
import { openImageInput } from "../../../runtime/onnx/inputs/source.ts";
import { visionSpec } from "../../../runtime/onnx/test-models.ts";
import { abortable, decode, WIRE_VERSION, wireStream, writeMessage } from "../../wire.ts";
import { eventually } from "../infer/test-engines.ts";
import { connect, type TestHost, testHost } from "../infer/test-hosts.ts";
import { KEEPALIVE_MS, SHARD_PROTOCOL, type ShardEvent, type ShardService, shardProtocol } from "./index.ts";

// Real llama.cpp (stories260k) and onnxruntime (mnist-8) behind real libp2p hosts over QUIC on 127.0.0.1.
const STORIES: LocalModel = { name: "stories260k", runtime: "llama", path: STORIES_GGUF, sha256: STORIES_SHA256 };
const MNIST: LocalModel = {
  name: "mnist-8",
  runtime: "onnx",
  path: join(SHARED_MODELS, "mnist-8.onnx"),
  sha256: "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf",
};
const ref = (m: LocalModel) => ({ name: m.name, sha256: m.sha256 as string });
const IMAGES = 500;
const BATCH = 100;
const PROMPTS: PromptRecord[] = [
  { prompt: "Once upon a time", maxTokens: 48 },
  { prompt: "The little dog", maxTokens: 32 },
  { prompt: "Tom and Lily went to the park", maxTokens: 40, stop: ["box."] },
  { prompt: "One day, a girl", maxTokens: 24 },
];

/**
 * A real engine whose runs after the first wait until the test opens the gate (or the run's signal
 * aborts); `aborted` counts runs that ended by their signal.
 */
function gated(engine: Engine): Engine & { open: () => void; aborted: number } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  let runs = 0;
  const gate = {
    runtime: engine.runtime,
    open,
    aborted: 0,
    async *run(model: LocalModel, request: InferenceRequest, options: RunOptions = {}) {
      try {
        if (runs++ > 0) await abortable(opened, options.signal);
        yield* engine.run(model, request, options);
      } finally {
        if (options.signal?.aborted) gate.aborted += 1;
      }
    },
    preload: (model: LocalModel, options?: RunOptions) => engine.preload(model, options),
    dispose: () => engine.dispose(),
    [Symbol.asyncDispose]: () => engine.dispose(),
  };
  return gate;
}

/** What the rogue provider answers to any shard: frames as a function of the shard's index. */
let rogueFrames: (index: number) => Record<string, unknown>[] = () => [];

let llama: LlamaEngine;
let onnx: OnnxEngine;
let gate: ReturnType<typeof gated>;
let held: ReturnType<typeof gated>;
let provider: TestHost;
let slow: TestHost;
let single: TestHost;
let capped: TestHost;
let rogue: TestHost;
let client: TestHost;
let shards: ShardService;
let images: RawImage[];

beforeAll(async () => {
  llama = createLlamaEngine({ threads: 1 });
  onnx = createOnnxEngine();
  gate = gated(llama);
  const models = () => new Map([MNIST, STORIES].map((m) => [m.sha256 as string, m]));
  provider = await testHost({
    shard: shardProtocol({ served: models, engines: { llama, onnx }, batchRecords: BATCH }),
  });
  slow = await testHost({ shard: shardProtocol({ served: models, engines: { llama: gate } }) });
  held = gated(llama);
  single = await testHost({
    shard: shardProtocol({ served: models, engines: { llama: held }, maxConcurrent: 1, maxQueued: 0 }),
  });
  capped = await testHost({
    shard: shardProtocol({ served: models, engines: { llama: gated(llama) }, shardTimeoutMs: 50 }),
  });
  client = await testHost({ shard: shardProtocol() });
  rogue = await testHost();
  await rogue.handle(SHARD_PROTOCOL, async (stream: Stream) => {
    const lp = wireStream(stream, 64 * 1024 ** 2);
    const request = decode((await lp.read()).subarray()) as { shard: { index: number } };
    for (const frame of rogueFrames(request.shard.index))
      await writeMessage(lp, { v: WIRE_VERSION, ...frame } as never);
    await stream.close();
  });
  for (const peer of [provider, slow, single, capped, rogue]) await connect(client, peer);
  shards = client.services.shard as ShardService;
  await using source = await openImageInput(join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"));
  images = (await source.next(IMAGES))?.images ?? [];
  await llama.preload(STORIES);
});

afterAll(async () => {
  await Promise.all([client, provider, slow, single, capped, rogue].map((h) => h?.stop()));
  await Promise.all([llama?.dispose(), onnx?.dispose()]);
});

async function collect(events: AsyncIterable<ShardEvent>): Promise<{ partials: ShardEvent[]; done: ShardEvent }> {
  const partials: ShardEvent[] = [];
  for await (const e of events) {
    if (e.type === "done") return { partials, done: e };
    partials.push(e);
  }
  throw new Error("no done event");
}

async function failure(events: AsyncIterable<ShardEvent>): Promise<Error & { code?: string }> {
  try {
    await collect(events);
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error("the shard did not fail");
}

async function localText(record: PromptRecord): Promise<string> {
  let text = "";
  for await (const e of llama.run(STORIES, { kind: "generate", ...record })) if (e.type === "token") text += e.text;
  return text;
}

const promptShard = (index = 3): Shard => ({
  index,
  start: index * 4,
  count: PROMPTS.length,
  payload: { kind: "prompts", prompts: PROMPTS },
});

describe("shard protocol over QUIC", () => {
  test("a 500-image MNIST shard equals local classification, streamed in batches", async () => {
    const shard: Shard = { index: 2, start: 1000, count: IMAGES, payload: { kind: "images", images } };
    const { partials, done } = await collect(shards.runShard(provider.peerId, ref(MNIST), shard));
    expect(partials.map((p) => (p.type === "partial" ? p.first : -1))).toEqual([0, 100, 200, 300, 400]);
    if (done.type !== "done" || done.result.kind !== "tensor") throw new Error("no tensor result");
    const spec = visionSpec("mnist-8");
    let want: Tensor | undefined;
    const request = { kind: "tensor" as const, inputs: { [spec.input]: preprocess(images, spec, "float32") } };
    for await (const e of onnx.run(MNIST, request)) if (e.type === "tensors") want = e.outputs[spec.output];
    expect(done.result.output.dims).toEqual([IMAGES, 10]);
    expect(Array.from(done.result.output.data as Float32Array)).toEqual(Array.from(want?.data as Float32Array));
    expect(done.result.providers).toEqual([provider.peerId.toString()]);
    expect(done.result.shard).toBe(2);
    expect(done.usage.records).toBe(IMAGES);
  });

  test("a tensor shard (preprocessed rows) gives the same logits", async () => {
    const spec = visionSpec("mnist-8");
    const tensor = preprocess(images.slice(0, 30), spec, "float32");
    const shard: Shard = { index: 0, start: 0, count: 30, payload: { kind: "tensor", tensor } };
    const { done } = await collect(shards.runShard(provider.peerId, ref(MNIST), shard));
    let want: Tensor | undefined;
    for await (const e of onnx.run(MNIST, { kind: "tensor", inputs: { [spec.input]: tensor } })) {
      if (e.type === "tensors") want = e.outputs[spec.output];
    }
    if (done.type !== "done" || done.result.kind !== "tensor") throw new Error("no tensor result");
    expect(Array.from(done.result.output.data as Float32Array)).toEqual(Array.from(want?.data as Float32Array));
  });

  test("a 4-prompt shard equals local greedy outputs, one partial per prompt, with usage", async () => {
    const want = [];
    for (const record of PROMPTS) want.push(await localText(record));
    expect(want.every((w) => w.length > 0)).toBe(true);
    const { partials, done } = await collect(shards.runShard(provider.peerId, ref(STORIES), promptShard()));
    expect(partials.map((p) => (p.type === "partial" && p.result.kind === "text" ? p.result.outputs : []))).toEqual(
      want.map((w) => [w]),
    );
    if (done.type !== "done" || done.result.kind !== "text") throw new Error("no text result");
    expect(done.result.outputs).toEqual(want);
    expect(done.result.shard).toBe(3);
    expect(done.usage.records).toBe(4);
    expect(done.usage.outputTokens).toBeGreaterThan(20);
    expect(done.usage.inputTokens).toBeGreaterThan(4);
  });

  test("partial results arrive before the provider has computed the rest", async () => {
    const seen: string[] = [];
    for await (const e of shards.runShard(slow.peerId, ref(STORIES), promptShard())) {
      seen.push(e.type);
      // The provider's engine holds records 1-3 until this first partial has reached the client.
      if (seen.length === 1) gate.open();
    }
    expect(seen).toEqual(["partial", "partial", "partial", "partial", "done"]);
  });

  test("a model the provider does not serve, or the wrong kind of shard, is refused", async () => {
    const other = { name: "other", sha256: "c".repeat(64) };
    const notServed = await failure(shards.runShard(provider.peerId, other, promptShard()));
    expect(notServed.name).toBe("RemoteShardError");
    expect(notServed.code).toBe("model-not-served");
    const wrongKind = await failure(shards.runShard(provider.peerId, ref(MNIST), promptShard()));
    expect(wrongKind.code).toBe("invalid-input");
  });

  test("results that do not fit the shard are bad-result", async () => {
    const text = (shard: number, outputs: string[]) => ({ kind: "text", shard, providers: ["me"], outputs });
    const usage = { records: 4, inputTokens: 1, outputTokens: 1, computeMs: 1 };
    const cases: [string, (i: number) => Record<string, unknown>[]][] = [
      ["another shard's result", () => [{ type: "partial", first: 0, result: text(7, ["x"]) }]],
      ["records out of order", (i) => [{ type: "partial", first: 1, result: text(i, ["x"]) }]],
      [
        "more records than the shard",
        (i) => [{ type: "partial", first: 0, result: text(i, ["a", "b", "c", "d", "e"]) }],
      ],
      ["no records", (i) => [{ type: "partial", first: 0, result: text(i, []) }]],
      [
        "done too early",
        (i) => [
          { type: "partial", first: 0, result: text(i, ["x"]) },
          { type: "done", usage },
        ],
      ],
      [
        "a tensor for prompts",
        (i) => [
          {
            type: "partial",
            first: 0,
            result: {
              kind: "tensor",
              shard: i,
              providers: ["me"],
              output: { type: "uint8", dims: [4], data: new Uint8Array(4) },
            },
          },
        ],
      ],
      ["a malformed result", (i) => [{ type: "partial", first: 0, result: { kind: "text", shard: i, outputs: 3 } }]],
    ];
    for (const [what, frames] of cases) {
      rogueFrames = frames;
      const error = await failure(shards.runShard(rogue.peerId, ref(STORIES), promptShard()));
      expect(`${what}: ${error.name} ${error.code}`).toBe(`${what}: RemoteShardError bad-result`);
    }
    rogueFrames = (i) => [{ type: "partial", first: 0, result: text(i, ["a", "b", "c", "d"]) }];
    const ended = await failure(shards.runShard(rogue.peerId, ref(STORIES), promptShard()));
    expect(ended.code).toBe("protocol");
    expect(ended.message).toMatch(/ended before the shard was done/);
  });

  test("a full provider answers busy; its own deadline is a timeout", async () => {
    const first = shards.runShard(single.peerId, ref(STORIES), promptShard())[Symbol.asyncIterator]();
    expect((await first.next()).value?.type).toBe("partial");
    const busy = await failure(shards.runShard(single.peerId, ref(STORIES), promptShard()));
    expect(busy.code).toBe("busy");
    held.open();
    for (;;) if ((await first.next()).done) break;
    const late = await failure(shards.runShard(capped.peerId, ref(STORIES), promptShard()));
    expect(late.code).toBe("timeout");
  });

  test("leaving early resets the stream: the provider's engine run is aborted and its slot freed", async () => {
    const service = slow.services.shard as ShardService;
    const stuck = gated(llama);
    const host = await testHost({
      shard: shardProtocol({ served: () => new Map([[STORIES_SHA256, STORIES]]), engines: { llama: stuck } }),
    });
    try {
      await connect(client, host);
      for await (const e of shards.runShard(host.peerId, ref(STORIES), promptShard())) {
        expect(e.type).toBe("partial");
        break;
      }
      // The reset reaches the provider through a failed write: a keepalive, within a few KEEPALIVE_MS.
      expect(await eventually(() => stuck.aborted === 1, 4 * KEEPALIVE_MS)).toBe(true);
      expect(await eventually(() => (host.services.shard as ShardService).load().active === 0)).toBe(true);
      expect(service.load().active).toBe(0);
    } finally {
      await host.stop();
    }
  });

  test("a shard over the size limit is refused before anything is sent; a short deadline is a TimeoutError", async () => {
    const floats = 4 * 1024 ** 2 + 1;
    const big: Shard = {
      index: 0,
      start: 0,
      count: 1,
      payload: { kind: "tensor", tensor: { type: "float32", dims: [1, floats], data: new Float32Array(floats) } },
    };
    expect((await failure(shards.runShard(provider.peerId, ref(MNIST), big))).name).toBe("InvalidInputError");
    const late = await failure(shards.runShard(provider.peerId, ref(STORIES), promptShard(), { deadlineMs: 1 }));
    expect(late.name).toBe("TimeoutError");
  });
});
