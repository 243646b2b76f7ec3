/**
 * Text re-scoring (issue 11): what it costs against generating the text again, how often it rejects
 * an honest output (false positives) and how often it catches a lazy one, on stories260k.
 *
 * Honest greedy outputs come from three engine settings (threads 1 and 2 at context 512, threads 1 at
 * context 256), each judged by scorers at threads 1 and 2; sampled outputs (temperature 0.8, seeded)
 * from threads 1 and 2. Lazy outputs: the first half of the tokens, another prompt's output, the words
 * shuffled, sampled text returned for a greedy request. The noise figure compares each token's
 * log-probability at generation (token-by-token decode, node-llama-cpp's evaluateWithMetadata) with
 * the re-scoring pass (one batch): the calibration behind NEAR_TIE_LOGPROB_MARGIN (jobs/verify/text.ts).
 * Usage: bun bench/rescore.ts [prompts=60]
 */
import { join } from "node:path";
import type { Token } from "node-llama-cpp";
import { judgeCompletion, MIN_MEAN_LOGPROB, NEAR_TIE_LOGPROB_MARGIN } from "../src/jobs/verify/text.ts";
import type { GenerateRequest, LocalModel } from "../src/runtime/engine.ts";
import { createLlamaEngine, type LlamaEngine } from "../src/runtime/llama/engine.ts";
import { type CompletionScore, SCORE_TOP_K, type ScoreRequest } from "../src/runtime/llama/score.ts";
import { MIRROR, machine, median } from "./lib.ts";

const count = Number(process.argv[2] ?? 60);
const MODEL_PATH = join(MIRROR, "stories260K.gguf");
const stories: LocalModel = { name: "stories260k", runtime: "llama", path: MODEL_PATH };
const TEMPERATURE = 0.8;

const NAMES = ["Lily", "Tom", "Max", "Sue", "Ben", "Mia", "Sam", "Anna", "Tim", "Lucy", "Jack", "Zoe"];
const OPENINGS = [
  "Once upon a time, a little girl named NAME",
  "One day, a boy named NAME",
  "There was a dog called NAME",
  "NAME went to the park",
  "NAME and her mom",
  "It was a sunny day. NAME",
  "NAME had a big red ball",
  "In a small town lived NAME",
  "NAME was sad because",
  "NAME found a shiny stone",
];
const prompts = Array.from({ length: count }, (_, i) => {
  const opening = OPENINGS[i % OPENINGS.length]!;
  const name = NAMES[Math.floor(i / OPENINGS.length) % NAMES.length]!;
  return { prompt: opening.replace("NAME", name), maxTokens: [64, 96, 128][i % 3]! };
});

interface Generated {
  text: string;
  chunks: { text: string; tokens: number[] }[];
  tokens: number;
  finish: string;
  ms: number;
}

async function generate(engine: LlamaEngine, req: Omit<GenerateRequest, "kind">): Promise<Generated> {
  const out: Generated = { text: "", chunks: [], tokens: 0, finish: "", ms: 0 };
  const start = performance.now();
  for await (const e of engine.run(stories, { kind: "generate", ...req })) {
    if (e.type === "token") {
      out.text += e.text;
      out.chunks.push(e);
      out.tokens += e.tokens.length;
    } else if (e.type === "done") out.finish = e.finishReason;
  }
  out.ms = performance.now() - start;
  return out;
}

async function timedScore(engine: LlamaEngine, req: ScoreRequest): Promise<{ score: CompletionScore; ms: number }> {
  const start = performance.now();
  const score = await engine.score(stories, req);
  return { score, ms: performance.now() - start };
}

const engines = {
  "t1/c512": createLlamaEngine({ threads: 1, contextSize: 512 }),
  "t2/c512": createLlamaEngine({ threads: 2, contextSize: 512 }),
  "t1/c256": createLlamaEngine({ threads: 1, contextSize: 256 }),
};
type Setting = keyof typeof engines;
const scorers = { t1: engines["t1/c512"], t2: engines["t2/c512"] };

interface Tally {
  runs: number;
  rejected: number;
  reasons: string[];
}
const tally = (): Tally => ({ runs: 0, rejected: 0, reasons: [] });
function count1(t: Tally, score: CompletionScore, req: Omit<ScoreRequest, "output">): boolean {
  const j = judgeCompletion(score, req);
  t.runs += 1;
  if (!j.ok) {
    t.rejected += 1;
    if (t.reasons.length < 3) t.reasons.push(j.reason);
  }
  return j.ok;
}

const honest: Record<string, Tally> = {};
const sampledHonest: Record<string, Tally> = {};
const lazy: Record<string, Tally> = {};
const timing = {
  t1: { gen: [] as number[], score: [] as number[] },
  t2: { gen: [] as number[], score: [] as number[] },
};
let honestGaps: number[] = [];
let nonArgmax = 0;
let flippedOutputs = 0;
let scoredOutputs = 0;
let honestTokens = 0;
let minMean = 0;
const differ: Record<string, number> = { "t2/c512": 0, "t1/c256": 0 };
let scorerDelta = 0;
let leadingSpace = 0;
let retokenized = 0;
let retokenizedSame = 0;
const lazyGaps: Record<string, number[]> = {};
const endGaps: number[] = [];
let eosOutside = 0;

const words = (s: string) => s.split(" ");
function shuffled(text: string, seed: number): string {
  const w = words(text);
  for (let i = w.length - 1; i > 0; i--) {
    const j = (seed * 7919 + i * 104729) % (i + 1);
    [w[i], w[j]] = [w[j]!, w[i]!];
  }
  return w.join(" ");
}

/** Gap of the first rejected token (or of the end), to show how far a lazy output lies beyond the margin. */
function firstGap(score: CompletionScore): number {
  for (const t of score.tokens) if (t.topLogprob - t.logprob > NEAR_TIE_LOGPROB_MARGIN) return t.topLogprob - t.logprob;
  return score.end.topLogprob - score.end.eos.logprob;
}

for (const [i, p] of prompts.entries()) {
  const req = { prompt: p.prompt, maxTokens: p.maxTokens };
  const outs = {} as Record<Setting, Generated>;
  for (const s of Object.keys(engines) as Setting[]) outs[s] = await generate(engines[s], req);
  for (const s of ["t2/c512", "t1/c256"] as const) if (outs[s].text !== outs["t1/c512"].text) differ[s]! += 1;

  // Detokenise -> retokenise: does the text's scored tokenisation reproduce the generated ids?
  const scored = (await scorers.t1.score(stories, { ...req, output: outs["t1/c512"].text })).tokens.map((t) => t.token);
  const ids = outs["t1/c512"].chunks.flatMap((c) => c.tokens);
  retokenized += 1;
  if (scored.length === ids.length && scored.every((t, k) => t === ids[k])) retokenizedSame += 1;

  for (const [s, g] of Object.entries(outs)) {
    const perScorer: CompletionScore[] = [];
    for (const [name, scorer] of Object.entries(scorers) as ["t1" | "t2", LlamaEngine][]) {
      const { score, ms } = await timedScore(scorer, { ...req, output: g.text });
      perScorer.push(score);
      // Same process, same engine, the first prompt (model load) left out: generating this text
      // against re-scoring it.
      if (i > 0 && s === (name === "t1" ? "t1/c512" : "t2/c512")) {
        timing[name].gen.push(g.ms);
        timing[name].score.push(ms);
      }
      const key = `greedy gen ${s} -> score ${name}`;
      honest[key] ??= tally();
      count1(honest[key], score, req);
      if (score.leadingSpace) leadingSpace += 1;
      const gaps = score.tokens.map((t) => t.topLogprob - t.logprob);
      honestGaps = honestGaps.concat(gaps);
      honestTokens += gaps.length;
      const flips = score.tokens.filter((t) => t.rank !== 0).length;
      nonArgmax += flips;
      scoredOutputs += 1;
      if (flips > 0) flippedOutputs += 1;
      const mean = score.tokens.reduce((a, t) => a + t.logprob, 0) / Math.max(1, score.tokens.length);
      minMean = Math.min(minMean, mean);
    }
    const [a, b] = perScorer;
    for (const [k, t] of a!.tokens.entries())
      scorerDelta = Math.max(scorerDelta, Math.abs(t.logprob - b!.tokens[k]!.logprob));
  }

  // Sampled: seeded generations on threads 1 and 2, judged by the support check (threads 1 scorer).
  const sreq = { ...req, temperature: TEMPERATURE, seed: 1000 + i };
  const sampled: Record<string, Generated> = {};
  for (const s of ["t1/c512", "t2/c512"] as const) {
    sampled[s] = await generate(engines[s], sreq);
    const key = `sampled gen ${s} -> score t1`;
    sampledHonest[key] ??= tally();
    count1(sampledHonest[key], await scorers.t1.score(stories, { ...sreq, output: sampled[s].text }), sreq);
  }

  // Lazy outputs, each judged for the request it claims to answer.
  const base = outs["t1/c512"];
  const half = base.chunks.slice(0, Math.floor(base.chunks.length / 2));
  const other = await generate(engines["t1/c512"], { ...req, prompt: prompts[(i + 1) % count]!.prompt });
  const otherSampled = await generate(engines["t1/c512"], { ...sreq, prompt: prompts[(i + 1) % count]!.prompt });
  const cases: [string, ScoreRequest][] = [
    ["greedy: first half of the tokens", { ...req, output: half.map((c) => c.text).join("") }],
    ["greedy: another prompt's output", { ...req, output: other.text }],
    ["greedy: words shuffled", { ...req, output: shuffled(base.text, i + 1) }],
    ["greedy: sampled text returned", { ...req, output: sampled["t1/c512"]!.text }],
    [
      "sampled: first half of the tokens",
      {
        ...sreq,
        output: sampled["t1/c512"]!.chunks.slice(0, Math.floor(sampled["t1/c512"]!.chunks.length / 2))
          .map((c) => c.text)
          .join(""),
      },
    ],
    ["sampled: another prompt's sampled output", { ...sreq, output: otherSampled.text }],
    ["sampled: words shuffled", { ...sreq, output: shuffled(sampled["t1/c512"]!.text, i + 1) }],
  ];
  for (const [name, r] of cases) {
    lazy[name] ??= tally();
    const score = await scorers.t1.score(stories, r);
    const rejected = !count1(lazy[name], score, r);
    // A greedy case's closest call (the half cut is reported by its end below).
    if (rejected && (r.temperature ?? 0) === 0 && !name.includes("first half")) {
      lazyGaps[name] ??= [];
      lazyGaps[name].push(firstGap(score));
    }
    if (name.includes("first half") && (r.temperature ?? 0) === 0) {
      if (score.end.eos.inSupport) endGaps.push(score.end.topLogprob - score.end.eos.logprob);
      else eosOutside += 1;
    }
  }
}

// Noise: what the model's numbers move by between generation (token-by-token decode) and the re-score
// (one batch), full vocabulary: the log-probability of the generated token, and the gap between the
// top two tokens (what decides a near tie). Decode at threads 1 and 2, batch at threads 1.
const { getLlama } = await import("node-llama-cpp");
const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, progressLogs: false });
const native = await llama.loadModel({ modelPath: MODEL_PATH });
const noise = { t1: { logprob: 0, gap: 0 }, t2: { logprob: 0, gap: 0 } };
let noiseTokens = 0;
let closestTie = Infinity;
const top2 = (m: Map<Token, number>) => {
  const [a, b] = m.values();
  return Math.log(a!) - Math.log(b!);
};
const batchContext = await native.createContext({ contextSize: 512, threads: { ideal: 1, min: 1 } });
for (const threads of [1, 2] as const) {
  const context = await native.createContext({ contextSize: 512, threads: { ideal: threads, min: threads } });
  for (const p of prompts) {
    const sequence = context.getSequence();
    const input = [native.tokens.bos!, ...native.tokenize(p.prompt, false, "trimLeadingSpace")] as Token[];
    const decoded: { token: Token; probabilities: Map<Token, number> }[] = [];
    for await (const step of sequence.evaluateWithMetadata(input, { probabilities: true }, { temperature: 0 })) {
      decoded.push(step);
      if (decoded.length >= p.maxTokens) break;
    }
    await sequence.dispose();
    const all = [...input, ...decoded.map((d) => d.token)];
    const batch = batchContext.getSequence();
    const read = { generateNext: { probabilities: true, options: { temperature: 0 } } };
    const results = await batch.controlledEvaluate(all.map((t, k) => (k >= input.length - 1 ? [t, read] : t)));
    await batch.dispose();
    for (const [k, d] of decoded.entries()) {
      const m = results[input.length - 1 + k]?.next.probabilities;
      if (!m) continue;
      const n = noise[`t${threads}`];
      n.logprob = Math.max(n.logprob, Math.abs(Math.log(d.probabilities.get(d.token)!) - Math.log(m.get(d.token)!)));
      n.gap = Math.max(n.gap, Math.abs(top2(d.probabilities) - top2(m)));
      closestTie = Math.min(closestTie, top2(d.probabilities));
      if (threads === 1) noiseTokens += 1;
    }
  }
  await context.dispose();
}
await batchContext.dispose();
await native.dispose();
for (const e of Object.values(engines)) await e.dispose();

const pct = (t: Tally) => `${t.rejected}/${t.runs} (${((100 * t.rejected) / Math.max(1, t.runs)).toFixed(1)}%)`;
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
console.log(`machine: ${machine()}`);
console.log(
  `stories260k, ${count} prompts, maxTokens 64/96/128, margin ${NEAR_TIE_LOGPROB_MARGIN} nats, min mean ${MIN_MEAN_LOGPROB}`,
);
for (const [name, t] of Object.entries(timing)) {
  const g = sum(t.gen);
  const s = sum(t.score);
  console.log(
    `threads ${name.slice(1)}: regenerate ${g.toFixed(0)} ms, re-score ${s.toFixed(0)} ms (medians ${median(t.gen).toFixed(1)} / ${median(t.score).toFixed(1)} ms), regenerate/re-score ${(g / s).toFixed(2)}x`,
  );
}
console.log(
  `retokenisation reproduced the generated ids: ${retokenizedSame}/${retokenized}; scored with a leading space: ${leadingSpace}`,
);
console.log(`greedy outputs differing from threads 1 / context 512: ${JSON.stringify(differ)} of ${count}`);
console.log("false positives (honest outputs rejected):");
for (const [k, t] of Object.entries({ ...honest, ...sampledHonest }))
  console.log(`  ${k}: ${pct(t)} ${t.reasons.join("; ")}`);
console.log(
  `honest greedy tokens: ${honestTokens}, not the scorer's argmax: ${nonArgmax} (in ${flippedOutputs}/${scoredOutputs} scored outputs), worst gap ${Math.max(...honestGaps).toFixed(6)} nats, lowest mean logprob ${minMean.toFixed(3)}`,
);
console.log(
  `noise, decode vs batch over ${noiseTokens} positions: token logprob ${noise.t1.logprob.toExponential(2)} (decode threads 1) / ${noise.t2.logprob.toExponential(2)} (threads 2), top-2 gap ${noise.t1.gap.toExponential(2)} / ${noise.t2.gap.toExponential(2)} nats; closest honest top-2 gap ${closestTie.toExponential(2)}; re-score threads 1 vs 2: ${scorerDelta.toExponential(2)} nats`,
);
console.log("detection (lazy outputs rejected):");
for (const [k, t] of Object.entries(lazy)) console.log(`  ${k}: ${pct(t)} ${t.reasons.slice(0, 1).join("; ")}`);
for (const [name, gaps] of Object.entries(lazyGaps)) {
  const sorted = [...gaps].sort((x, y) => x - y);
  console.log(
    `${name}: gap of the first rejected token, min ${sorted[0]?.toFixed(3)}, median ${median(sorted).toFixed(3)} nats`,
  );
}
console.log(
  `at a half cut EOS is outside the top ${SCORE_TOP_K} in ${eosOutside}/${count}${endGaps.length ? `, else ${Math.min(...endGaps).toFixed(2)} nats or more below the top` : ""}`,
);
