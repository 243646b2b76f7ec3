import { expect, test } from "bun:test";
import { join } from "node:path";
import type { ReputationRow } from "../src/cli/reputation.ts";
import type { JobReport } from "../src/jobs/job-report.ts";
import type { Ban } from "../src/reputation/store.ts";
import {
  checkMnistOutput,
  localGreedy,
  MNIST_CORRECT,
  MNIST_IMAGES,
  readJsonl,
  verifiedAsPlanned,
  watchedSubmit,
  writePrompts,
} from "./fixtures/jobs.ts";
import { infernet } from "./helpers/cli.ts";
import { TestNetwork } from "./helpers/network.ts";

/**
 * No false bans: 1,000 shards (MNIST in shards of 10) and 64 text shards (stories260k, one prompt
 * each) on three honest providers, real processes, every copy checked (canaries, agreement within
 * tolerance, re-scoring of text, adaptive replication as the streaks grow). The providers run
 * llama.cpp on different thread counts (1, 2, and calibrated), the honest difference the text
 * verifier must tolerate. Nobody is banned, no copy is held to be faulty, every shard is verified as
 * planned, and the texts are the local greedy outputs.
 */
const SHARDS = 1_000;
/** Short generations: a stories260k provider on 2 threads is ~30x slower per token here. */
const MAX_TOKENS = 24;

test("1,064 honest shards, text on 1 and 2 threads included: no provider banned, no copy faulty, every shard verified", async () => {
  await using net = new TestNetwork();
  const aggregator = await net.start("aggregator", ["--aggregator", "--fee", "1%"]);
  const provider = (models: string) => ["--provider", "--models", models, "--bootstrap", aggregator.quic];
  // h1 and h2 serve text too, on llama.cpp threads 1 and 2: every text shard is checked across both.
  const nodes = await Promise.all([
    net.start("h1", provider("mnist-8,stories260k"), { INFERNET_THREADS: "1" }),
    net.start("h2", provider("mnist-8,stories260k"), { INFERNET_THREADS: "2" }),
    net.start("h3", provider("mnist-8")),
  ]);
  await net.discoverable(aggregator.quic, "mnist-8", nodes);
  await net.discoverable(aggregator.quic, "stories260k", nodes.slice(0, 2));

  const home = net.home("client");
  const output = join(home, "labels.jsonl");
  const job = ["--model", "mnist-8", "--inputs", MNIST_IMAGES, "--shards", String(SHARDS), "--redundancy", "2"];
  await using submit = watchedSubmit([...job, "--output", output, "--bootstrap", aggregator.quic, "--no-mdns"], home);
  const r = await submit.done();
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  expect(await checkMnistOutput(output)).toBe(MNIST_CORRECT);
  const report = r.events.at(-1)?.report as JobReport;
  expect(report.shards).toHaveLength(SHARDS);
  expect(verifiedAsPlanned(report, 2)).toBe(true);
  // Adaptive replication: once streaks pass TRUST_STREAK, most shards get one copy (plus canaries).
  // Near certain over 1,000 shards: after the first ~30, each is single with probability >= 0.5.
  const single = report.shards.filter((s) => s.copiesTarget === 1).length;
  console.log(`shards with one copy: ${single} of ${SHARDS}`);
  expect(single).toBeGreaterThan(SHARDS / 4);
  const rejected = report.shards.flatMap((s) => s.copies).filter((c) => c.verification?.verdict === "rejected");
  expect(rejected).toEqual([]);

  // Text: every prompt its own shard on both text providers (--min-verification 2), compared and re-scored.
  const prompts = writePrompts(join(home, "prompts.jsonl"));
  const stories = join(home, "stories.jsonl");
  const text = ["--model", "stories260k", "--prompts", join(home, "prompts.jsonl"), "--max-tokens", String(MAX_TOKENS)];
  await using textSubmit = watchedSubmit(
    [
      ...text,
      "--shard-size",
      "1",
      "--redundancy",
      "2",
      "--output",
      stories,
      "--bootstrap",
      aggregator.quic,
      "--no-mdns",
    ],
    home,
  );
  const [t, local] = await Promise.all([textSubmit.done(), localGreedy(net.home("local"), prompts, MAX_TOKENS)]);
  expect(t.stderr).not.toContain("infernet:");
  expect(t.code).toBe(0);
  expect((await readJsonl<{ output: string }>(stories)).map((l) => l.output)).toEqual(local);
  const textReport = t.events.at(-1)?.report as JobReport;
  expect(textReport.shards).toHaveLength(prompts.length);
  expect(verifiedAsPlanned(textReport, 2)).toBe(true);
  const textCopies = textReport.shards.flatMap((s) => s.copies);
  expect(textCopies.filter((c) => c.verification?.verdict === "rejected")).toEqual([]);
  // Every shard verified by both thread counts.
  for (const node of nodes.slice(0, 2)) {
    const mine = textCopies.filter((c) => c.provider === node.status.peerId && c.state === "verified");
    expect(mine).toHaveLength(prompts.length);
  }
  const methods = Object.groupBy(textCopies, (c) => c.verification?.method ?? "none");
  console.log(
    `text copies by check: ${Object.entries(methods)
      .map(([m, cs]) => `${m} ${cs?.length}`)
      .join(", ")}`,
  );

  const rep = JSON.parse((await infernet(["reputation", "--json"], { home: aggregator.home })).stdout) as {
    providers: ReputationRow[];
    bans: Ban[];
  };
  expect(rep.bans).toEqual([]);
  expect(rep.providers.every((p) => p.faulty === 0)).toBe(true);
  expect(rep.providers.reduce((n, p) => n + p.verified, 0)).toBeGreaterThanOrEqual(SHARDS + prompts.length);
}, 300_000);
