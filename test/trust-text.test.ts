import { expect, test } from "bun:test";
import { join } from "node:path";
import type { ReputationRow } from "../src/cli/reputation.ts";
import type { JobReport } from "../src/jobs/job-report.ts";
import type { Ban } from "../src/reputation/store.ts";
import { localGreedy, readJsonl, writePrompts } from "./fixtures/jobs.ts";
import { infernet } from "./helpers/cli.ts";
import { TestNetwork } from "./helpers/network.ts";
import { ROOT } from "./helpers/paths.ts";

/**
 * Lazy text providers among honest ones, real processes, stories260k on real llama.cpp: one cuts
 * every generation to half its tokens, one answers with the text of another prompt. The aggregator
 * re-scores texts that differ (and text canaries that differ from their known answer) through the
 * model itself: both liars are caught and banned, and no honest provider is. The merged output is
 * exactly the local greedy output. (Honest divergence across thread counts and builds is measured
 * by bench/rescore.ts: a stories260k provider on 2 threads is ~30x slower here, too slow for a test.)
 */
const LIAR = join(ROOT, "test/fixtures/lying-provider.ts");
const MAX_TOKENS = 24;

test("truncating and other-text providers are caught by re-scoring and banned; output = local greedy", async () => {
  await using net = new TestNetwork();
  const aggregator = await net.start("aggregator", ["--aggregator", "--fee", "1%"]);
  const env = { INFERNET_BOOTSTRAP: aggregator.quic };
  const stories = ["--models", "stories260k"];
  const nodes = await Promise.all([
    net.startScript("truncate", LIAR, [...stories, "--lie", "truncate"], env),
    net.startScript("other-text", LIAR, [...stories, "--lie", "other-text"], env),
    ...["h1", "h2", "h3"].map((n) => net.start(n, ["--provider", ...stories, "--bootstrap", aggregator.quic])),
  ]);
  const liars = nodes.slice(0, 2).map((n) => n.status.peerId);
  const honest = nodes.slice(2).map((n) => n.status.peerId);
  await net.discoverable(aggregator.quic, "stories260k", nodes);

  const home = net.home("client");
  const prompts = writePrompts(join(home, "prompts.jsonl"));
  const output = join(home, "stories.jsonl");
  const [r, local] = await Promise.all([
    infernet(
      ["submit", "--model", "stories260k", "--prompts", join(home, "prompts.jsonl")]
        .concat(["--max-tokens", String(MAX_TOKENS), "--shard-size", "8", "--redundancy", "2", "--output", output])
        .concat(["--bootstrap", aggregator.quic, "--no-mdns", "--json"]),
      { home },
    ),
    localGreedy(net.home("local"), prompts, MAX_TOKENS),
  ]);
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  const lines = await readJsonl<{ index: number; output: string }>(output);
  expect(lines.map((l) => l.output)).toEqual(local);

  const report = JSON.parse(r.stdout.trim().split("\n").at(-1) as string).report as JobReport;
  const copies = report.shards.flatMap((s) => s.copies);
  expect(copies.filter((c) => liars.includes(c.provider) && c.state === "verified")).toEqual([]);
  const rescored = copies.filter((c) => liars.includes(c.provider) && c.verification?.method === "re-score");
  expect(rescored.length).toBeGreaterThan(0);
  expect(rescored.every((c) => c.verification?.verdict === "rejected")).toBe(true);

  const rep = JSON.parse((await infernet(["reputation", "--json"], { home: aggregator.home })).stdout) as {
    providers: ReputationRow[];
    bans: Ban[];
  };
  expect(rep.bans.map((b) => b.provider).sort()).toEqual([...liars].sort());
  for (const b of rep.bans) {
    // Shards until detection.
    console.log(`lazy text: ${b.provider.slice(-8)} caught in copy ${b.copiesBefore}: ${b.reason}`);
    expect(b.copiesBefore).toBeGreaterThanOrEqual(1);
  }
  for (const p of honest) {
    const row = rep.providers.find((x) => x.provider === p);
    expect(row?.faulty ?? 0).toBe(0);
  }
}, 240_000);
