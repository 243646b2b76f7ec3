/**
 * The baseline for bench/llama.ts: the smallest node-llama-cpp program that does what
 * `infernet run` does (load, one context, greedy completion, streamed). Prints one JSON line.
 * Usage: bun bench/llama-direct.ts <model.gguf> <prompt> <maxTokens> <threads> <contextSize>
 */
export {};

const [path, prompt, maxTokens, threads, contextSize] = process.argv.slice(2);
// Like infernet's usage.firstOutputMs, the first-token clock starts before llama.cpp is loaded.
const requested = performance.now();
const { getLlama, LlamaCompletion } = await import("node-llama-cpp");
const llama = await getLlama({ gpu: "auto", build: "never" });
const model = await llama.loadModel({ modelPath: path! });
const context = await model.createContext({ contextSize: Number(contextSize), threads: Number(threads) });
const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
let tokens = 0;
let first = 0;
const start = performance.now();
await completion.generateCompletion(prompt!, {
  maxTokens: Number(maxTokens),
  temperature: 0,
  onToken: (t) => {
    if (tokens === 0) first = performance.now() - requested;
    tokens += t.length;
  },
});
const ms = performance.now() - start;
console.log(JSON.stringify({ tokens, ms, firstMs: first, tokensPerSecond: (tokens * 1000) / ms }));
process.exit(0);
