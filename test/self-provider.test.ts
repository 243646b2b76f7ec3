import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { infernet } from "./helpers/cli.ts";
import { TestNetwork } from "./helpers/network.ts";
import { MNIST_DIR } from "./helpers/paths.ts";

/**
 * An aggregator that also serves the model is one of the job's providers: with one other provider
 * and redundancy 2, every shard is computed once on the aggregator's own engines and once remotely.
 */
const IMAGES = join(MNIST_DIR, "t10k-images-idx3-ubyte.gz");

test("an aggregator that serves mnist-8 computes copies itself, beside a remote provider", async () => {
  await using net = new TestNetwork();
  const aggregator = await net.start("aggregator", ["--aggregator", "--provider", "--models", "mnist-8"]);
  const provider = await net.start("p1", ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic]);
  await net.discoverable(aggregator.quic, "mnist-8", [provider]);
  const home = net.home("client");
  const output = join(home, "labels.jsonl");
  const r = await infernet(
    ["submit", "--model", "mnist-8", "--inputs", IMAGES, "--shard-size", "2500", "--redundancy", "2"].concat([
      "--output",
      output,
      "--aggregator",
      aggregator.quic,
      "--no-mdns",
      "--json",
    ]),
    { home },
  );
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  const report = JSON.parse(r.stdout.trimEnd().split("\n").at(-1) ?? "{}").report;
  for (const shard of report.shards) {
    const verified = shard.copies
      .filter((c: { state: string }) => c.state === "verified")
      .map((c: { provider: string }) => c.provider);
    expect(new Set(verified)).toEqual(new Set([aggregator.status.peerId, provider.status.peerId]));
  }
  const labels = [...gunzipSync(readFileSync(join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz"))).subarray(8)];
  const lines = readFileSync(output, "utf8")
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as { class: number });
  expect(lines.filter((l, i) => l.class === labels[i]).length).toBe(9_890);
}, 120_000);
