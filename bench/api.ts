/**
 * The HTTP API against `infernet run`'s own path, on one network of real processes on 127.0.0.1: two
 * stories260k providers (threads 1) and a client node (`infernet start --api 0`). Both sides go
 * through that node, as they would on a user's machine:
 *  - run: the node's control socket, what `infernet run` uses when a node is running (ControlClient.run);
 *  - api: POST /v1/chat/completions with stream: true on the node's API port (fetch; the SSE parsed
 *    here only to time the chunks).
 * Rounds alternate (order flipped each round). Per request: time to first token (request to the first
 * piece of text) and streaming tokens/s (first token to last). Then load on the API: 1, 50 and 200
 * concurrent streams of short chats, p50/p99 first token and total latency, requests/s, and the
 * node's resident memory (VmRSS) sampled during the load.
 * Usage: bun bench/api.ts [rounds=15] [maxTokens=200]
 */
import { ControlClient } from "../src/node/control/client.ts";
import type { GenerateRequest } from "../src/runtime/engine.ts";
import { TestNetwork } from "../test/helpers/network.ts";
import { machine, median } from "./lib.ts";
import { rssBytes } from "./proc-stat.ts";

const rounds = Number(process.argv[2] ?? 15);
const maxTokens = Number(process.argv[3] ?? 200);
const STORIES = { name: "stories260k", sha256: "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d" };
const PROMPT = "Once upon a time";
const SHORT_TOKENS = 16;

interface Timing {
  firstMs: number;
  totalMs: number;
  tokens: number;
  /** Tokens per second from the first token to the last. */
  streamTps: number;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN;
}

async function viaRun(control: ControlClient, tokens: number): Promise<Timing> {
  const request: GenerateRequest = { kind: "generate", prompt: PROMPT, chat: true, maxTokens: tokens };
  const start = performance.now();
  let first = 0;
  let last = 0;
  let count = 0;
  for await (const e of control.run(STORIES, request, {})) {
    if (e.type === "token" && e.text) {
      last = performance.now();
      if (!first) first = last;
    }
    if (e.type === "done") count = e.usage.outputTokens;
  }
  return timing(start, first, last, count);
}

async function viaApi(url: string, tokens: number): Promise<Timing> {
  const start = performance.now();
  const res = await fetch(`${url}/chat/completions`, {
    method: "POST",
    body: JSON.stringify({
      model: STORIES.name,
      messages: [{ role: "user", content: PROMPT }],
      max_tokens: tokens,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let first = 0;
  let last = 0;
  let count = 0;
  let buffered = "";
  const decoder = new TextDecoder();
  for await (const bytes of res.body) {
    buffered += decoder.decode(bytes, { stream: true });
    let end = buffered.indexOf("\n\n");
    while (end >= 0) {
      const data = buffered.slice(6, end);
      buffered = buffered.slice(end + 2);
      end = buffered.indexOf("\n\n");
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data) as {
        choices: { delta: { content?: string } }[];
        usage?: { completion_tokens: number };
        error?: { message: string };
      };
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.choices[0]?.delta.content) {
        last = performance.now();
        if (!first) first = last;
      }
      if (chunk.usage) count = chunk.usage.completion_tokens;
    }
  }
  return timing(start, first, last, count);
}

function timing(start: number, first: number, last: number, tokens: number): Timing {
  const streamMs = last - first;
  return {
    firstMs: first - start,
    totalMs: performance.now() - start,
    tokens,
    streamTps: streamMs > 0 ? (tokens - 1) / (streamMs / 1000) : Number.NaN,
  };
}

await using net = new TestNetwork();
const env = { INFERNET_THREADS: "1" };
const p1 = await net.start("p1", ["--provider", "--models", "stories260k"], env);
const p2 = await net.start("p2", ["--provider", "--models", "stories260k", "--bootstrap", p1.quic], env);
const node = await net.start("client", ["--bootstrap", p1.quic, "--api", "0"]);
await net.discoverable(p1.quic, "stories260k", [p1, p2]);
const url = (node.status as unknown as { api: string }).api;
const control = await ControlClient.connect(node.home);
if (!control) throw new Error("the client node has no control socket");

console.log(`# API vs infernet run's path: ${machine()}`);
console.log(`${rounds} rounds of ${maxTokens} tokens, chat, greedy; warm-up round not counted`);
await viaRun(control, maxTokens);
await viaApi(url, maxTokens);
const run: Timing[] = [];
const api: Timing[] = [];
for (let r = 0; r < rounds; r++) {
  if (r % 2 === 0) {
    run.push(await viaRun(control, maxTokens));
    api.push(await viaApi(url, maxTokens));
  } else {
    api.push(await viaApi(url, maxTokens));
    run.push(await viaRun(control, maxTokens));
  }
}
const m = (xs: Timing[], k: keyof Timing) => median(xs.map((x) => x[k]));
console.log("path  first token ms  streaming tok/s  total ms");
for (const [name, xs] of [
  ["run", run],
  ["api", api],
] as const) {
  console.log(
    `${name.padEnd(4)}  ${m(xs, "firstMs").toFixed(1).padStart(14)}  ${m(xs, "streamTps").toFixed(0).padStart(15)}  ${m(xs, "totalMs").toFixed(1).padStart(8)}`,
  );
}
console.log(
  `api/run streaming tokens/s: ${(m(api, "streamTps") / m(run, "streamTps")).toFixed(3)}; extra first-token time: ${(m(api, "firstMs") - m(run, "firstMs")).toFixed(1)} ms`,
);

console.log(`\n# Load on the API: concurrent streams of ${SHORT_TOKENS}-token chats`);
console.log("streams  ok  errors  first p50/p99 ms  total p50/p99 ms  req/s  node RSS max MiB");
for (const streams of [1, 50, 200]) {
  let peak = rssBytes(node.proc.pid);
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssBytes(node.proc.pid));
  }, 50);
  const start = performance.now();
  const results = await Promise.allSettled(Array.from({ length: streams }, () => viaApi(url, SHORT_TOKENS)));
  const wall = performance.now() - start;
  clearInterval(sampler);
  const ok = results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<Timing>).value);
  const errors = results.length - ok.length;
  const firsts = ok.map((t) => t.firstMs);
  const totals = ok.map((t) => t.totalMs);
  console.log(
    `${String(streams).padStart(7)}  ${String(ok.length).padStart(3)}  ${String(errors).padStart(6)}  ${percentile(firsts, 50).toFixed(0).padStart(7)}/${percentile(firsts, 99).toFixed(0).padEnd(8)}  ${percentile(totals, 50).toFixed(0).padStart(7)}/${percentile(totals, 99).toFixed(0).padEnd(8)}  ${(ok.length / (wall / 1000)).toFixed(1).padStart(5)}  ${(peak / 2 ** 20).toFixed(0).padStart(16)}`,
  );
  for (const r of results) if (r.status === "rejected") console.log(`  error: ${String(r.reason).slice(0, 160)}`);
}
