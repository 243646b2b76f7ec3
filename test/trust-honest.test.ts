import { expect, test } from "bun:test";
import { join } from "node:path";
import type { ReputationRow } from "../src/cli/reputation.ts";
import type { JobReport } from "../src/jobs/job-report.ts";
import type { Ban } from "../src/reputation/store.ts";
import { checkMnistOutput, MNIST_CORRECT, MNIST_IMAGES, verifiedAsPlanned, watchedSubmit } from "./fixtures/jobs.ts";
import { infernet } from "./helpers/cli.ts";
import { TestNetwork } from "./helpers/network.ts";

/**
 * No false bans: 1,000 shards (MNIST in shards of 10) on three honest providers, real processes,
 * every copy checked (canaries, agreement within tolerance, adaptive replication as the streaks
 * grow). Nobody is banned, no copy is held to be faulty, and every shard is verified as planned.
 */
const SHARDS = 1_000;

test("1,000 honest shards: no provider banned, no copy faulty, every shard verified", async () => {
  await using net = new TestNetwork();
  const aggregator = await net.start("aggregator", ["--aggregator", "--fee", "1%"]);
  const provider = ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic];
  const nodes = await Promise.all(["h1", "h2", "h3"].map((n) => net.start(n, provider)));
  await net.discoverable(aggregator.quic, "mnist-8", nodes);

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

  const rep = JSON.parse((await infernet(["reputation", "--json"], { home: aggregator.home })).stdout) as {
    providers: ReputationRow[];
    bans: Ban[];
  };
  expect(rep.bans).toEqual([]);
  expect(rep.providers.every((p) => p.faulty === 0)).toBe(true);
  expect(rep.providers.reduce((n, p) => n + p.verified, 0)).toBeGreaterThanOrEqual(SHARDS);
}, 240_000);
