/**
 * Tiny-shard throughput of /infernet/shard/1.0.0: the same one-image MNIST shards sent as single
 * requests (one stream each) and as batches (one `shards` request per 16 shards), with a window of 8
 * calls in flight either way. One process, two real libp2p hosts over QUIC on 127.0.0.1, real
 * onnxruntime on mnist-8; the provider's settings are the defaults. Rounds alternate so neither side
 * gets a warmer machine; every result is checked against the single requests' (the figures count only
 * shards that came back whole).
 * Usage: bun bench/shard-batch.ts [shards=2000] [rounds=5]
 */
import { join } from "node:path";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { PeerId } from "@libp2p/interface";
import type { Shard, ShardResult } from "../src/jobs/records.ts";
import { createHost, type Host } from "../src/node/host.ts";
import { type ShardService, shardProtocol } from "../src/node/protocols/shard/index.ts";
import type { LocalModel } from "../src/runtime/engine.ts";
import { createOnnxEngine } from "../src/runtime/onnx/engine.ts";
import { openImageInput } from "../src/runtime/onnx/inputs/source.ts";
import { MIRROR, machine, median } from "./lib.ts";

const SHARDS = Number(process.argv[2] ?? 2_000);
const ROUNDS = Number(process.argv[3] ?? 5);
/** Shards per batch request. */
const PER_BATCH = 16;
/** Calls (single or batch) in flight at once. */
const WINDOW = 8;
const MNIST: LocalModel = {
  name: "mnist-8",
  runtime: "onnx",
  path: join(MIRROR, "mnist-8.onnx"),
  sha256: "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf",
};
const REF = { name: MNIST.name, sha256: MNIST.sha256 as string };

async function host(services: Parameters<typeof createHost>[0]["services"]): Promise<Host> {
  return await createHost({
    privateKey: await generateKeyPair("Ed25519"),
    listen: ["/ip4/127.0.0.1/udp/0/quic-v1"],
    mdns: false,
    services,
  });
}

/** Runs `calls` with at most `WINDOW` of them in flight. */
async function windowed(calls: (() => Promise<void>)[]): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < calls.length) await (calls[next++] as () => Promise<void>)();
  };
  await Promise.all(Array.from({ length: WINDOW }, lane));
}

async function singles(service: ShardService, peer: PeerId, shards: Shard[]): Promise<ShardResult[]> {
  const results: ShardResult[] = [];
  await windowed(
    shards.map((shard) => async () => {
      for await (const e of service.runShard(peer, REF, shard)) if (e.type === "done") results[shard.index] = e.result;
    }),
  );
  return results;
}

async function batches(service: ShardService, peer: PeerId, shards: Shard[]): Promise<ShardResult[]> {
  const results: ShardResult[] = [];
  const groups: Shard[][] = [];
  for (let at = 0; at < shards.length; at += PER_BATCH) groups.push(shards.slice(at, at + PER_BATCH));
  await windowed(
    groups.map((group) => async () => {
      for await (const e of service.runShards(peer, REF, group)) if (e.type === "done") results[e.shard] = e.result;
    }),
  );
  return results;
}

function bytesOf(result: ShardResult & { kind: "tensor" }): Buffer {
  const { data } = result.output;
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Shards per second, after checking that every shard came back with the reference's output. */
async function measure(
  run: () => Promise<ShardResult[]>,
  reference: ShardResult[] | undefined,
): Promise<{ rate: number; results: ShardResult[] }> {
  const start = performance.now();
  const results = await run();
  const seconds = (performance.now() - start) / 1000;
  for (let i = 0; i < SHARDS; i++) {
    const got = results[i];
    if (got?.kind !== "tensor") throw new Error(`shard ${i} came back without a tensor result`);
    const want = reference?.[i];
    if (want?.kind === "tensor" && !bytesOf(want).equals(bytesOf(got)))
      throw new Error(`shard ${i}: the batch result differs from the single request's`);
  }
  return { rate: SHARDS / seconds, results };
}

await using source = await openImageInput(join(MIRROR, "../data/mnist/t10k-images-idx3-ubyte.gz"));
const images = (await source.next(SHARDS))?.images ?? [];
if (images.length < SHARDS) throw new Error(`only ${images.length} MNIST images, ${SHARDS} wanted`);
const shards: Shard[] = images.map((image, index) => ({
  index,
  start: index,
  count: 1,
  payload: { kind: "images", images: [image] },
}));

await using onnx = createOnnxEngine();
const provider = await host({
  shard: shardProtocol({ served: () => new Map([[REF.sha256, MNIST]]), engines: { onnx } }),
});
const client = await host({ shard: shardProtocol() });
try {
  const addr = provider.getMultiaddrs().find((m) => m.toString().includes("/quic-v1"));
  if (!addr) throw new Error("the provider has no QUIC address");
  await client.dial(addr);
  const service = client.services.shard as ShardService;
  // Warm-up: the ONNX session, the connection and the JIT, both ways.
  const reference = await singles(service, provider.peerId, shards);
  await batches(service, provider.peerId, shards.slice(0, WINDOW * PER_BATCH));
  const single: number[] = [];
  const batched: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    single.push((await measure(() => singles(service, provider.peerId, shards), reference)).rate);
    batched.push((await measure(() => batches(service, provider.peerId, shards), reference)).rate);
  }
  const s = median(single);
  const b = median(batched);
  console.log(
    `${machine()}; mnist-8, ${SHARDS} one-image shards, ${WINDOW} calls in flight, ${ROUNDS} rounds (median)`,
  );
  console.log(
    `single requests:      ${s.toFixed(0)} shards/s  (rounds: ${single.map((r) => r.toFixed(0)).join(", ")})`,
  );
  console.log(
    `batches of ${PER_BATCH}:        ${b.toFixed(0)} shards/s  (rounds: ${batched.map((r) => r.toFixed(0)).join(", ")})`,
  );
  console.log(`ratio batch/single:   ${(b / s).toFixed(2)}x`);
} finally {
  await Promise.all([client.stop(), provider.stop()]);
}
