/**
 * Remote generation over /infernet/infer/1.0.0 (QUIC on 127.0.0.1) against local generation with the
 * same model and settings, rounds alternated (order flipped each round) so neither side gets a warmer
 * machine. Two setups:
 *  1. same process: provider, client and the local run share this process and one engine (the
 *     provider's networking then lands on the JS thread that drives the local generation too);
 *  2. provider in its own process (as on a real network), local run in this process.
 * Both sides are timed by the consumer of the events: end-to-end tokens/s (request to `done`),
 * streaming tokens/s (first token to last) and time to first token. The connection is open beforehand,
 * as a running node's is; a fresh connection's dial is printed apart. Also mnist-8, 100 images.
 * Usage: bun bench/remote.ts [rounds=21] [maxTokens=400]
 */
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { PeerId } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { findModel } from "../src/models/catalog.ts";
import { createHost, type Host } from "../src/node/host.ts";
import { INFER_PROTOCOL, type InferService, inferProtocol } from "../src/node/protocols/infer/index.ts";
import type { InferenceEvent, InferenceRequest, LocalModel } from "../src/runtime/engine.ts";
import { createLlamaEngine } from "../src/runtime/llama/engine.ts";
import { createOnnxEngine } from "../src/runtime/onnx/engine.ts";
import { preprocess } from "../src/runtime/onnx/inputs/preprocess.ts";
import { openImageInput } from "../src/runtime/onnx/inputs/source.ts";
import { BUN, MIRROR, machine, median } from "./lib.ts";

const STORIES: LocalModel = {
  name: "stories260k",
  runtime: "llama",
  path: `${MIRROR}/stories260K.gguf`,
  sha256: "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d",
};
const MNIST: LocalModel = {
  name: "mnist-8",
  runtime: "onnx",
  path: `${MIRROR}/mnist-8.onnx`,
  sha256: "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf",
};
const ref = (m: LocalModel) => ({ name: m.name, sha256: m.sha256 as string });
const served = new Map([STORIES, MNIST].map((m) => [m.sha256 as string, m]));
const llama = createLlamaEngine({ threads: 1, contextSize: 512 });
const onnx = createOnnxEngine();

async function host(serve: boolean): Promise<Host> {
  return createHost({
    privateKey: await generateKeyPair("Ed25519"),
    listen: ["/ip4/127.0.0.1/udp/0/quic-v1"],
    mdns: false,
    services: { infer: inferProtocol(serve ? { served: () => served, engines: { llama, onnx } } : {}) },
  });
}

const quicAddr = (h: Host) => h.getMultiaddrs().find((m) => m.toString().includes("/quic-v1"));

if (process.argv[2] === "serve") {
  // Provider process: print the address, serve until stdin closes.
  const provider = await host(true);
  await llama.preload(STORIES);
  console.log(JSON.stringify({ addr: quicAddr(provider)?.toString(), peer: provider.peerId.toString() }));
  for await (const _ of Bun.stdin.stream());
  await provider.stop();
  await llama.dispose();
  process.exit(0);
}

const ROUNDS = Number(process.argv[2] ?? 21);
const MAX_TOKENS = Number(process.argv[3] ?? 400);
const request: InferenceRequest = { kind: "generate", prompt: "Once upon a time", maxTokens: MAX_TOKENS };

interface Timing {
  tokens: number;
  firstMs: number;
  lastMs: number;
  totalMs: number;
  text: string;
}

async function timed(events: () => AsyncIterable<InferenceEvent>): Promise<Timing> {
  const start = performance.now();
  const t: Timing = { tokens: 0, firstMs: 0, lastMs: 0, totalMs: 0, text: "" };
  for await (const e of events()) {
    if (e.type !== "token") continue;
    const now = performance.now() - start;
    if (t.tokens === 0) t.firstMs = now;
    t.lastMs = now;
    t.tokens += e.tokens.length;
    t.text += e.text;
  }
  t.totalMs = performance.now() - start;
  return t;
}

const endToEnd = (t: Timing) => (t.tokens / t.totalMs) * 1000;
const streaming = (t: Timing) => ((t.tokens - 1) / (t.lastMs - t.firstMs)) * 1000;

/** Alternated rounds of local and remote generation; prints the figures. */
async function compare(title: string, infer: InferService, peer: PeerId): Promise<void> {
  const runLocal = () => timed(() => llama.run(STORIES, request));
  const runRemote = () => timed(() => infer.infer(peer, ref(STORIES), request));
  for (let i = 0; i < 3; i++) {
    await runLocal();
    await runRemote();
  }
  const local: Timing[] = [];
  const remote: Timing[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const pair = r % 2 === 0 ? [await runLocal(), await runRemote()] : [await runRemote(), await runLocal()].reverse();
    local.push(pair[0] as Timing);
    remote.push(pair[1] as Timing);
  }
  const ratio = (rate: (t: Timing) => number) => median(local.map((l, i) => rate(remote[i] as Timing) / rate(l)));
  const same = [...local, ...remote].every((t) => t.text === local[0]?.text);
  const first = (ts: Timing[]) => median(ts.map((t) => t.firstMs));
  console.log(`\n${title}`);
  for (const [name, ts] of [
    ["local ", local],
    ["remote", remote],
  ] as const) {
    console.log(
      `  ${name}: ${median(ts.map(endToEnd)).toFixed(0)} tokens/s end to end, ${median(ts.map(streaming)).toFixed(0)} streaming, first token ${first(ts).toFixed(2)} ms`,
    );
  }
  console.log(`  tokens/s ratio remote/local (median of per-round ratios, target >= 0.95):`);
  console.log(`    end to end (request to done): ${ratio(endToEnd).toFixed(3)}`);
  console.log(`    streaming (first to last token): ${ratio(streaming).toFixed(3)}`);
  console.log(`  extra time to first token: ${(first(remote) - first(local)).toFixed(2)} ms (target < 20 ms)`);
  console.log(`  remote text identical to local in every round: ${same}`);
}

console.log(`machine: ${machine()}`);
console.log(`${INFER_PROTOCOL} over QUIC on 127.0.0.1; stories260k, greedy, ${MAX_TOKENS} tokens, threads 1,`);
console.log(`context 512, ${ROUNDS} alternated rounds after 3 warm-up pairs (medians)`);

// 1. Same process.
const provider = await host(true);
const client = await host(false);
const providerAddr = quicAddr(provider);
if (!providerAddr) throw new Error("the provider has no QUIC address");
await client.dial(providerAddr);
const infer = client.services.infer as InferService;
await compare("1. provider, client and local run in this process (one engine)", infer, provider.peerId);

const cold: number[] = [];
for (let i = 0; i < 5; i++) {
  const fresh = await host(false);
  const start = performance.now();
  await fresh.dial(providerAddr);
  for await (const e of (fresh.services.infer as InferService).infer(provider.peerId, ref(STORIES), request)) {
    if (e.type === "token") break;
  }
  cold.push(performance.now() - start);
  await fresh.stop();
}
console.log(`  first token on a new connection (dial included): ${median(cold).toFixed(1)} ms (median of 5)`);

const spec = findModel("mnist-8")?.vision;
if (!spec) throw new Error("mnist-8 has no vision spec");
await using source = await openImageInput(`${MIRROR}/../data/mnist/t10k-images-idx3-ubyte.gz`);
const images = preprocess((await source.next(100))?.images ?? [], spec, "float32");
const tensors: InferenceRequest = { kind: "tensor", inputs: { Input3: images } };
const onnxLocal: number[] = [];
const onnxRemote: number[] = [];
for (let i = 0; i < 3; i++) await timed(() => infer.infer(provider.peerId, ref(MNIST), tensors));
for (let r = 0; r < ROUNDS; r++) {
  onnxLocal.push((await timed(() => onnx.run(MNIST, tensors))).totalMs);
  onnxRemote.push((await timed(() => infer.infer(provider.peerId, ref(MNIST), tensors))).totalMs);
}
console.log(
  `  mnist-8, 100 images (314 KB) per request: local ${median(onnxLocal).toFixed(2)} ms, remote ${median(onnxRemote).toFixed(2)} ms`,
);
await provider.stop();

// 2. Provider in a child process.
const child = Bun.spawn([BUN, import.meta.path, "serve"], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
try {
  const reader = child.stdout.getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the provider process exited");
    line += new TextDecoder().decode(value);
  }
  const { addr, peer } = JSON.parse(line) as { addr: string; peer: string };
  await client.dial(multiaddr(addr));
  await compare("2. provider in its own process, client and local run in this one", infer, peerIdFromString(peer));
} finally {
  child.stdin.end();
  await child.exited;
}

await client.stop();
await llama.dispose();
await onnx.dispose();
