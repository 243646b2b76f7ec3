import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { MNIST_DIR, SHARED_MODELS, STORIES_GGUF, STORIES_SHA256 } from "../../../../test/helpers/paths.ts";
import type { PromptRecord, Shard, ShardResult } from "../../../jobs/records.ts";
import type { Engine, InferenceRequest, LocalModel, RunOptions } from "../../../runtime/engine.ts";
import { createLlamaEngine, type LlamaEngine } from "../../../runtime/llama/engine.ts";
import { createOnnxEngine, type OnnxEngine } from "../../../runtime/onnx/engine.ts";
import type { RawImage } from "../../../runtime/onnx/inputs/image.ts";
import { preprocess } from "../../../runtime/onnx/inputs/preprocess.ts";
import { openImageInput } from "../../../runtime/onnx/inputs/source.ts";
import { visionSpec } from "../../../runtime/onnx/test-models.ts";
import { RuntimeError } from "../../../util/errors.ts";
import { abortable } from "../../wire.ts";
import { connect, type TestHost, testHost } from "../infer/test-hosts.ts";
import {
  MAX_SHARDS_PER_REQUEST,
  type ShardBatchEvent,
  type ShardEvent,
  type ShardService,
  shardProtocol,
} from "./index.ts";

// Several shards per stream, on real llama.cpp (stories260k) and onnxruntime (mnist-8) behind real
// libp2p hosts over QUIC on 127.0.0.1. The reference for every batch is the same shards sent one by one.
const STORIES: LocalModel = { name: "stories260k", runtime: "llama", path: STORIES_GGUF, sha256: STORIES_SHA256 };
const MNIST: LocalModel = {
  name: "mnist-8",
  runtime: "onnx",
  path: join(SHARED_MODELS, "mnist-8.onnx"),
  sha256: "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf",
};
const ref = (m: LocalModel) => ({ name: m.name, sha256: m.sha256 as string });
/** Images per ONNX call on the providers: small, so a 10-image shard streams several partials. */
const BATCH_RECORDS = 4;
/** The deadline provider's cap: far above one tiny shard's compute, so only the held second shard meets it. */
const CAPPED_SHARD_TIMEOUT_MS = 3_000;

/** The real engine, except that its runs fail once `ok` of them have run (the test sets `ok`). */
function failing(engine: Engine): Engine & { ok: number } {
  const wrapper = {
    runtime: engine.runtime,
    ok: Number.POSITIVE_INFINITY,
    async *run(model: LocalModel, request: InferenceRequest, options: RunOptions = {}) {
      if (wrapper.ok-- <= 0) throw new RuntimeError("the engine failed (injected by the test)");
      yield* engine.run(model, request, options);
    },
    preload: (model: LocalModel, options?: RunOptions) => engine.preload(model, options),
    dispose: () => engine.dispose(),
    [Symbol.asyncDispose]: () => engine.dispose(),
  };
  return wrapper;
}

/** The real engine, except that every run after the first waits until its signal aborts. */
function holding(engine: Engine): Engine {
  let runs = 0;
  return {
    runtime: engine.runtime,
    async *run(model: LocalModel, request: InferenceRequest, options: RunOptions = {}) {
      if (runs++ > 0) await abortable(new Promise<never>(() => {}), options.signal);
      yield* engine.run(model, request, options);
    },
    preload: (model, options) => engine.preload(model, options),
    dispose: () => engine.dispose(),
    [Symbol.asyncDispose]: () => engine.dispose(),
  };
}

let llama: LlamaEngine;
let onnx: OnnxEngine;
let broken: ReturnType<typeof failing>;
let provider: TestHost;
let flaky: TestHost;
let capped: TestHost;
let client: TestHost;
let shards: ShardService;
let images: RawImage[];

beforeAll(async () => {
  llama = createLlamaEngine({ threads: 1 });
  onnx = createOnnxEngine();
  broken = failing(onnx);
  const models = () => new Map([MNIST, STORIES].map((m) => [m.sha256 as string, m]));
  const batchRecords = BATCH_RECORDS;
  provider = await testHost({ shard: shardProtocol({ served: models, engines: { llama, onnx }, batchRecords }) });
  flaky = await testHost({ shard: shardProtocol({ served: models, engines: { onnx: broken }, batchRecords }) });
  capped = await testHost({
    shard: shardProtocol({
      served: models,
      engines: { llama: holding(llama) },
      shardTimeoutMs: CAPPED_SHARD_TIMEOUT_MS,
    }),
  });
  client = await testHost({ shard: shardProtocol() });
  for (const peer of [provider, flaky, capped]) await connect(client, peer);
  shards = client.services.shard as ShardService;
  await using source = await openImageInput(join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"));
  images = (await source.next(40))?.images ?? [];
  await llama.preload(STORIES);
});

afterAll(async () => {
  await Promise.all([client, provider, flaky, capped].map((h) => h?.stop()));
  await Promise.all([llama?.dispose(), onnx?.dispose()]);
});

/** Every event of a batch, and the error that ended it (if one did). */
async function drain(events: AsyncIterable<ShardBatchEvent>): Promise<{ events: ShardBatchEvent[]; error?: Error }> {
  const seen: ShardBatchEvent[] = [];
  try {
    for await (const e of events) seen.push(e);
  } catch (err) {
    return { events: seen, error: err as Error };
  }
  return { events: seen };
}

async function single(peer: TestHost, model: LocalModel, shard: Shard): Promise<ShardResult> {
  for await (const e of shards.runShard(peer.peerId, ref(model), shard) as AsyncIterable<ShardEvent>) {
    if (e.type === "done") return e.result;
  }
  throw new Error("no done event");
}

const imageShard = (index: number, from: number, count: number): Shard => ({
  index,
  start: from,
  count,
  payload: { kind: "images", images: images.slice(from, from + count) },
});

const dones = (events: ShardBatchEvent[]) => events.filter((e) => e.type === "done");

describe("several shards per stream", () => {
  test("a batch of mixed MNIST shards gives each shard's result, in request order, as single requests do", async () => {
    const spec = visionSpec("mnist-8");
    const batch: Shard[] = [
      imageShard(5, 0, 1),
      imageShard(2, 1, 10),
      {
        index: 9,
        start: 11,
        count: 3,
        payload: { kind: "tensor", tensor: preprocess(images.slice(11, 14), spec, "float32") },
      },
      imageShard(0, 14, 1),
      imageShard(7, 15, 5),
    ];
    const before = (provider.services.shard as ShardService).load().served;
    const { events, error } = await drain(shards.runShards(provider.peerId, ref(MNIST), batch));
    expect(error).toBeUndefined();
    // Each shard's partials (records in order) then its done, shard after shard.
    expect(events.map((e) => `${e.shard}:${e.type === "partial" ? e.first : "done"}`)).toEqual([
      "5:0",
      "5:done",
      "2:0",
      "2:4",
      "2:8",
      "2:done",
      "9:0",
      "9:done",
      "0:0",
      "0:done",
      "7:0",
      "7:4",
      "7:done",
    ]);
    for (const [i, done] of dones(events).entries()) {
      const shard = batch[i] as Shard;
      if (done.type !== "done") throw new Error("not a done event");
      expect(done.result).toEqual(await single(provider, MNIST, shard));
      expect(done.result.shard).toBe(shard.index);
      expect(done.result.providers).toEqual([provider.peerId.toString()]);
      expect(done.usage.records).toBe(shard.count);
    }
    expect((provider.services.shard as ShardService).load().served).toBe(before + 2 * batch.length);
  });

  test("a batch of prompt shards on stories260k equals the same shards one by one (greedy)", async () => {
    const prompts = (index: number, records: PromptRecord[]): Shard => ({
      index,
      start: index * 2,
      count: records.length,
      payload: { kind: "prompts", prompts: records },
    });
    const batch = [
      prompts(1, [{ prompt: "Once upon a time", maxTokens: 24 }]),
      prompts(0, [
        { prompt: "The little dog", maxTokens: 16 },
        { prompt: "Tom and Lily went to the park", maxTokens: 20, stop: ["box."] },
      ]),
      prompts(3, [{ prompt: "One day, a girl", maxTokens: 12 }]),
    ];
    const { events, error } = await drain(shards.runShards(provider.peerId, ref(STORIES), batch));
    expect(error).toBeUndefined();
    const got = dones(events).map((e) => e.result);
    const want = [];
    for (const shard of batch) want.push(await single(provider, STORIES, shard));
    expect(got).toEqual(want);
    expect(got.every((r) => r.kind === "text" && r.outputs.every((o) => o.length > 0))).toBe(true);
  });

  test("an engine failure mid-batch: the shards done before it stay done, then the error", async () => {
    const failedBefore = (flaky.services.shard as ShardService).load().failed;
    broken.ok = 2;
    const batch = [imageShard(0, 0, 1), imageShard(1, 1, 1), imageShard(2, 2, 1), imageShard(3, 3, 1)];
    const { events, error } = await drain(shards.runShards(flaky.peerId, ref(MNIST), batch));
    broken.ok = Number.POSITIVE_INFINITY;
    expect(dones(events).map((e) => e.shard)).toEqual([0, 1]);
    expect(`${error?.name} ${(error as { code?: string } | undefined)?.code}`).toBe("RemoteShardError internal");
    // The two shards never run count as failed on the provider.
    expect((flaky.services.shard as ShardService).load()).toMatchObject({ failed: failedBefore + 2, active: 0 });
    // The provider serves the next batch whole.
    const again = await drain(shards.runShards(flaky.peerId, ref(MNIST), batch));
    expect(again.error).toBeUndefined();
    expect(dones(again.events).map((e) => e.shard)).toEqual([0, 1, 2, 3]);
  });

  test("the provider's deadline mid-batch: the first shard done, then a timeout", async () => {
    const tiny = (index: number): Shard => ({
      index,
      start: index,
      count: 1,
      payload: { kind: "prompts", prompts: [{ prompt: "Once upon a time", maxTokens: 4 }] },
    });
    // The capped provider's engine holds every run after its first, so shard 1 meets the deadline.
    const { events, error } = await drain(shards.runShards(capped.peerId, ref(STORIES), [tiny(0), tiny(1)]));
    expect(dones(events).map((e) => e.shard)).toEqual([0]);
    expect(`${error?.name} ${(error as { code?: string } | undefined)?.code}`).toBe("RemoteShardError timeout");
  });

  test("a batch the provider would refuse is refused before anything is sent", async () => {
    const one = imageShard(0, 0, 1);
    const many = Array.from({ length: MAX_SHARDS_PER_REQUEST + 1 }, (_, i) => ({ ...one, index: i }));
    for (const batch of [[], many, [one, imageShard(0, 1, 1)]]) {
      const { events, error } = await drain(shards.runShards(provider.peerId, ref(MNIST), batch));
      expect(events).toEqual([]);
      expect(error?.name).toBe("InvalidInputError");
    }
  });
});
