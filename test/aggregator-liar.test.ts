import { expect, test } from "bun:test";
import { join } from "node:path";
import type { JobReport } from "../src/jobs/job-report.ts";
import { checkMnistOutput, MNIST_CORRECT, MNIST_IMAGES, MNIST_RECORDS, watchedSubmit } from "./fixtures/jobs.ts";
import { TestNetwork } from "./helpers/network.ts";
import { ROOT } from "./helpers/paths.ts";

/**
 * A provider that lies: test/fixtures/lying-provider.ts, a real node serving mnist-8 over the real
 * shard protocol whose results are wrong, beside two honest providers and an aggregator. With
 * redundancy 2 every shard must still end with the honest result, and every copy the liar computed
 * must be failed. Each kind of lie gets a network of its own (a dead liar's announcement would
 * draw copies of the next job for a while): results of the wrong shape (9 classes), then results
 * of the right shape with the wrong digits.
 */
const LIAR = join(ROOT, "test/fixtures/lying-provider.ts");

async function jobWithLiar(lie: string) {
  await using net = new TestNetwork();
  const aggregator = await net.start("aggregator", ["--aggregator", "--fee", "1%"]);
  const provider = ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic];
  const [liar, ...honest] = await Promise.all([
    net.startScript("liar", LIAR, ["--lie", lie], { INFERNET_BOOTSTRAP: aggregator.quic }),
    net.start("h1", provider),
    net.start("h2", provider),
  ]);
  await net.discoverable(aggregator.quic, "mnist-8", [liar, ...honest]);
  const home = net.home("client");
  const output = join(home, "labels.jsonl");
  const job = ["--model", "mnist-8", "--inputs", MNIST_IMAGES, "--shard-size", "1000", "--redundancy", "2"];
  await using submit = watchedSubmit([...job, "--output", output, "--bootstrap", aggregator.quic, "--no-mdns"], home);
  const r = await submit.done();
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  expect(r.events.at(-2)).toMatchObject({ event: "output", records: MNIST_RECORDS });
  expect(await checkMnistOutput(output)).toBe(MNIST_CORRECT);

  const report = r.events.at(-1)?.report as JobReport;
  expect(report.job.state).toBe("verified");
  const lies = report.shards.flatMap((s) => s.copies).filter((c) => c.provider === liar.status.peerId);
  expect(lies.length).toBeGreaterThan(0);
  expect(lies.map((c) => c.state)).toEqual(lies.map(() => "failed"));
  for (const shard of report.shards) {
    expect(shard.state).toBe("verified");
    const verified = shard.copies.filter((c) => c.state === "verified");
    expect(verified.length).toBeGreaterThan(0);
    expect(verified.every((c) => c.provider !== liar.status.peerId)).toBe(true);
    // What the liar returned (when it got that far) is not what was accepted.
    for (const c of shard.copies.filter((c) => c.provider === liar.status.peerId && c.resultSha256)) {
      expect(c.resultSha256).not.toBe(shard.resultSha256);
    }
  }
}

test("a provider whose results have the wrong shape (9 classes): the job completes right, its copies all failed", async () => {
  await jobWithLiar("shape");
}, 120_000);

test("a provider whose results have the right shape and wrong digits: the job completes right, its copies all failed", async () => {
  await jobWithLiar("values");
}, 120_000);
