import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { infernet } from "./helpers/cli.ts";
import { TestNetwork } from "./helpers/network.ts";
import { MNIST_DIR, tempDir } from "./helpers/paths.ts";

/**
 * `infernet submit`, `jobs` and `job <id>` as a user runs them: the real CLI in child processes.
 * First every refusal that needs no network (one clear line, the right exit code), then one batch
 * job across a real aggregator and two providers on 127.0.0.1.
 */
const IMAGES = join(MNIST_DIR, "t10k-images-idx3-ubyte.gz");
const LABELS = join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz");

describe("refusals without a network", () => {
  const cases: [string, (dir: string) => string[], number, string][] = [
    ["an unknown flag", () => ["submit", "--modle", "mnist-8"], 2, "submit: Unknown option"],
    ["no model", () => ["submit", "--inputs", IMAGES], 2, "which model?"],
    ["no input", () => ["submit", "--model", "mnist-8"], 2, "what input?"],
    [
      "an unknown model",
      () => ["submit", "--model", "mnist-9000", "--inputs", IMAGES],
      3,
      'unknown model "mnist-9000"',
    ],
    ["a missing input", (d) => ["submit", "--model", "mnist-8", "--inputs", join(d, "nope.gz")], 3, "does not exist"],
    ["prompts for an image model", () => ["submit", "--model", "mnist-8", "--prompts", IMAGES], 2, "ONNX model"],
    [
      "images for a language model",
      () => ["submit", "--model", "stories260k", "--inputs", IMAGES],
      2,
      "language model",
    ],
    [
      "both shard flags",
      () => ["submit", "--model", "mnist-8", "--inputs", IMAGES, "--shards", "2", "--shard-size", "5"],
      2,
      "not both",
    ],
    [
      "a bad shard count",
      () => ["submit", "--model", "mnist-8", "--inputs", IMAGES, "--shards", "0"],
      2,
      "--shards must be",
    ],
    [
      "a bad redundancy",
      () => ["submit", "--model", "mnist-8", "--inputs", IMAGES, "--redundancy", "9"],
      2,
      "--redundancy",
    ],
    ["a bad price", () => ["submit", "--model", "mnist-8", "--inputs", IMAGES, "--max-price", "-5"], 2, "--max-price"],
    [
      "a price below a msat",
      () => ["submit", "--model", "mnist-8", "--inputs", IMAGES, "--max-price", "1.5msat"],
      2,
      "--max-price must be an amount",
    ],
    [
      "a price above 1 BTC",
      () => ["submit", "--model", "mnist-8", "--inputs", IMAGES, "--max-price", "100000001sat"],
      2,
      "is more than 100,000,000 sat",
    ],
    [
      "a bad deadline",
      () => ["submit", "--model", "mnist-8", "--inputs", IMAGES, "--deadline", "soon"],
      2,
      "--deadline",
    ],
    [
      "a bad aggregator",
      () => ["submit", "--model", "mnist-8", "--inputs", IMAGES, "--aggregator", "/ip4/1.2.3.4/udp/1/quic-v1"],
      2,
      "does not say which peer",
    ],
    ["a missing job file", (d) => ["submit", join(d, "job.json")], 3, "does not exist"],
    [
      "a job file with a bad field",
      (d) => ["submit", jobFile(d, { model: "mnist-8", inputs: IMAGES, redundancy: 0 })],
      4,
      '"redundancy"',
    ],
    [
      "a job file with an unknown field",
      (d) => ["submit", jobFile(d, { model: "mnist-8", inputs: IMAGES, colour: "red" })],
      4,
      "colour",
    ],
    [
      "no way onto a network",
      () => ["submit", "--model", "mnist-8", "--inputs", IMAGES, "--no-mdns"],
      9,
      "not connected to any peer",
    ],
    ["a job never submitted", () => ["job", "no-such-job"], 2, "no job no-such-job was submitted"],
    ["a job without its id", () => ["job"], 2, "which job?"],
  ];
  for (const [what, args, code, says] of cases) {
    test(`${what}: exit ${code}, one line`, async () => {
      using dir = tempDir();
      const r = await infernet(args(dir.path), { home: dir.path });
      expect(r.stderr).toContain(says);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(r.code).toBe(code);
    });
  }

  test("jobs on a fresh home: none, and an empty JSON list", async () => {
    using dir = tempDir();
    expect((await infernet(["jobs"], { home: dir.path })).stdout).toContain("no jobs submitted from here yet");
    const json = await infernet(["jobs", "--json"], { home: dir.path });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ submitted: [], held: [] });
  });
});

function jobFile(dir: string, value: unknown): string {
  const path = join(dir, "job.json");
  writeFileSync(path, JSON.stringify(value));
  return path;
}

/** The expected digit of every MNIST test image. */
function mnistLabels(): number[] {
  return [...gunzipSync(readFileSync(LABELS)).subarray(8)];
}

test("a 10,000-image MNIST job across an aggregator and two providers: output in order, 9,890 right; a re-run finds the same job", async () => {
  await using net = new TestNetwork();
  const aggregator = await net.start("aggregator", ["--aggregator"]);
  const providers = [
    await net.start("p1", ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic]),
    await net.start("p2", ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic]),
  ];
  await net.discoverable(aggregator.quic, "mnist-8", providers);
  const home = net.home("client");
  const output = join(home, "labels.jsonl");
  const args = ["submit", jobFile(home, { model: "mnist-8", inputs: IMAGES, shardSize: 2500, output: "labels.jsonl" })];
  const network = ["--bootstrap", aggregator.quic, "--no-mdns"];

  const first = await infernet([...args, ...network, "--json"], { home });
  expect(first.stderr).not.toContain("infernet:");
  expect(first.code).toBe(0);
  const events = first.stdout
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  const submitted = events.find((e) => e.event === "submitted");
  expect(submitted).toMatchObject({ aggregator: aggregator.status.peerId, created: true });
  expect(events.at(-2)).toMatchObject({ event: "output", path: output, records: 10_000 });
  const report = events.at(-1).report;
  expect(report.job.shardCount).toBe(4);
  expect(report.shards.every((s: { state: string }) => s.state === "verified")).toBe(true);
  expect(new Set(report.providers.map((p: { provider: string }) => p.provider))).toEqual(
    new Set(providers.map((p) => p.status.peerId)),
  );

  const lines = (await Bun.file(output).text())
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(lines.map((l) => l.index)).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
  const labels = mnistLabels();
  expect(lines.filter((l, i) => l.class === labels[i]).length).toBe(9_890);

  // The same submit again: the content-derived key names the job the aggregator holds; nothing is uploaded twice.
  const again = await infernet([...args, ...network], { home });
  expect(again.code).toBe(0);
  expect(again.stderr).toContain(`job ${submitted.jobId} was submitted before`);

  const jobs = await infernet(["jobs", "--json"], { home });
  expect(JSON.parse(jobs.stdout).submitted).toMatchObject([
    { jobId: submitted.jobId, state: "fetched", shardCount: 4 },
  ]);
  const shown = await infernet(["job", submitted.jobId, ...network], { home });
  expect(shown.code).toBe(0);
  expect(shown.stdout).toContain(`job ${submitted.jobId}: verified`);
  expect(shown.stdout).toContain(providers[0]?.status.peerId ?? "?");

  // On the aggregator's own home (its node running): the jobs it holds, read from its store.
  const held = await infernet(["jobs", "--json"], { home: aggregator.home });
  expect(JSON.parse(held.stdout).held).toMatchObject([{ id: submitted.jobId, state: "verified", shards: 4 }]);
  const local = await infernet(["job", submitted.jobId, "--json"], { home: aggregator.home });
  expect(JSON.parse(local.stdout).job).toMatchObject({ id: submitted.jobId, state: "verified" });

  // With a node running on the client's home, submit goes through its control socket: --detach, then --wait.
  const daemon = await net.start("client-daemon", ["--bootstrap", aggregator.quic]);
  const second = join(daemon.home, "second.jsonl");
  const detached = await infernet(
    ["submit", "--model", "mnist-8", "--inputs", IMAGES, "--shards", "3", "--aggregator", aggregator.quic].concat([
      "--output",
      second,
      "--detach",
    ]),
    { home: daemon.home },
  );
  expect(detached.code).toBe(0);
  const jobId = detached.stdout.trim();
  expect(detached.stderr).toContain(`infernet job ${jobId} --wait`);
  const waited = await infernet(["job", jobId, "--wait"], { home: daemon.home });
  expect(waited.stderr).not.toContain("infernet:");
  expect(waited.code).toBe(0);
  expect(waited.stdout).toContain(`output: ${second} (10000 records`);
  const classes = async (path: string) =>
    (await Bun.file(path).text())
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l).class);
  expect(await classes(second)).toEqual(await classes(output));
}, 180_000);
