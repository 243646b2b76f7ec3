import { expect, test } from "bun:test";
import { join } from "node:path";
import type { ReputationRow } from "../src/cli/reputation.ts";
import type { JobReport } from "../src/jobs/job-report.ts";
import type { Ban } from "../src/reputation/store.ts";
import { checkMnistOutput, MNIST_CORRECT, MNIST_IMAGES, watchedSubmit } from "./fixtures/jobs.ts";
import { infernet } from "./helpers/cli.ts";
import { TestNetwork } from "./helpers/network.ts";
import { ROOT } from "./helpers/paths.ts";

/**
 * Providers that are honest but unreliable, as real processes (test/fixtures/lying-provider.ts with
 * `--lie none`): one so slow that it misses its leases, one that drops its connections mid-shard.
 * Neither is banned (nothing they returned was wrong), both lose score to the honest ones, and the
 * job still completes exactly.
 */
const LIAR = join(ROOT, "test/fixtures/lying-provider.ts");

test("a slow provider and a flapping one lose score, are not banned, and the output is exact", async () => {
  await using net = new TestNetwork();
  const aggregator = await net.start("aggregator", ["--aggregator", "--fee", "1%"]);
  const env = { INFERNET_BOOTSTRAP: aggregator.quic };
  const provider = ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic];
  const nodes = await Promise.all([
    net.startScript("slow", LIAR, ["--lie", "none", "--slow-ms", "30000"], env),
    net.startScript("flapping", LIAR, ["--lie", "none", "--flap", "2"], env),
    ...["h1", "h2", "h3"].map((n) => net.start(n, provider)),
  ]);
  const [slow, flapping] = nodes.map((n) => n.status.peerId);
  await net.discoverable(aggregator.quic, "mnist-8", nodes);

  const home = net.home("client");
  const output = join(home, "labels.jsonl");
  const job = ["--model", "mnist-8", "--inputs", MNIST_IMAGES, "--shard-size", "500", "--redundancy", "2"];
  await using submit = watchedSubmit([...job, "--output", output, "--bootstrap", aggregator.quic, "--no-mdns"], home);
  const r = await submit.done();
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  expect(await checkMnistOutput(output)).toBe(MNIST_CORRECT);
  const report = r.events.at(-1)?.report as JobReport;
  expect(report.job.state).toBe("verified");

  const rep = JSON.parse((await infernet(["reputation", "--json"], { home: aggregator.home })).stdout) as {
    providers: ReputationRow[];
    bans: Ban[];
  };
  expect(rep.bans).toEqual([]);
  const row = (p: string | undefined) => rep.providers.find((x) => x.provider === p) as ReputationRow;
  const honest = nodes.slice(2).map((n) => row(n.status.peerId));
  for (const bad of [row(slow), row(flapping)]) {
    expect(bad.faulty).toBe(0);
    expect(bad.lost).toBeGreaterThan(0);
    expect(bad.score).toBeLessThan(Math.min(...honest.map((h) => h.score)));
  }
  for (const h of honest) expect(h.faulty).toBe(0);
}, 240_000);
