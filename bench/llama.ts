/**
 * Local llama tokens/s through `infernet run` against a minimal direct node-llama-cpp script with
 * the same settings, alternating in the same run. Both figures are generation time measured inside
 * each process (model load excluded); the CLI's wall time to first token and peak RSS are printed too.
 * Usage: bun bench/llama.ts [rounds=5] [maxTokens=400]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, CLI, MIRROR, machine, median, ROOT, spawnTimed } from "./lib.ts";

const rounds = Number(process.argv[2] ?? 5);
const maxTokens = Number(process.argv[3] ?? 400);
const prompt = "Once upon a time";
const threads = 1;
const contextSize = 512; // set for both sides: infernet through INFERNET_CONTEXT_SIZE
const home = mkdtempSync(join(tmpdir(), "infernet-bench-"));
const env = {
  INFERNET_HOME: home,
  INFERNET_CONTEXT_SIZE: String(contextSize),
  INFERNET_MODEL_MIRROR: process.env.INFERNET_MODEL_MIRROR ?? MIRROR,
};

// Pull once so the timed runs measure inference, not the copy from the mirror.
await spawnTimed([BUN, CLI, "pull", "stories260k"], env);

const cli: number[] = [];
const direct: number[] = [];
const cliFirst: number[] = [];
const directFirst: number[] = [];
const rss: number[] = [];
const wall: number[] = [];
for (let i = 0; i < rounds; i++) {
  const a = await spawnTimed(
    [BUN, CLI, "run", "stories260k", prompt, "--max-tokens", String(maxTokens), "--threads", String(threads), "--json"],
    env,
  );
  if (a.code !== 0) throw new Error(`infernet run failed: ${a.stderr}`);
  const r = JSON.parse(a.stdout);
  cli.push(r.tokensPerSecond);
  cliFirst.push(r.usage.firstOutputMs);
  rss.push(a.maxRssBytes);
  wall.push(a.wallMs);
  const b = await spawnTimed([
    BUN,
    join(ROOT, "bench/llama-direct.ts"),
    join(MIRROR, "stories260K.gguf"),
    prompt,
    String(maxTokens),
    String(threads),
    String(contextSize),
  ]);
  if (b.code !== 0) throw new Error(`direct script failed: ${b.stderr}`);
  const d = JSON.parse(b.stdout);
  direct.push(d.tokensPerSecond);
  directFirst.push(d.firstMs);
}
rmSync(home, { recursive: true, force: true });

const ratio = median(cli) / median(direct);
console.log(`machine: ${machine()}`);
console.log(`stories260k, greedy, ${maxTokens} tokens, threads ${threads}, ${rounds} alternating rounds (medians)`);
console.log(
  `infernet run:        ${median(cli).toFixed(0)} tokens/s, first token ${median(cliFirst).toFixed(1)} ms (from the request, llama.cpp load included)`,
);
console.log(
  `direct node-llama:   ${median(direct).toFixed(0)} tokens/s, first token ${median(directFirst).toFixed(1)} ms`,
);
console.log(`ratio infernet/direct: ${ratio.toFixed(3)} (target >= 0.95)`);
console.log(
  `infernet run whole process: ${median(wall).toFixed(0)} ms wall, peak RSS ${(median(rss) / 2 ** 20).toFixed(0)} MiB`,
);
