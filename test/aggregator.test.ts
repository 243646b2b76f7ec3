import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { JobReport } from "../src/jobs/job-report.ts";
import type { NodeStatus } from "../src/node/node.ts";
import {
  checkMnistOutput,
  copiesOf,
  localGreedy,
  MNIST_CORRECT,
  MNIST_IMAGES,
  MNIST_RECORDS,
  readJsonl,
  type SubmitEvent,
  verifiedAsPlanned,
  verifiedBy,
  watchedSubmit,
  writePrompts,
} from "./fixtures/jobs.ts";
import { infernet } from "./helpers/cli.ts";
import { type NodeProcess, TestNetwork } from "./helpers/network.ts";

/**
 * Issue 4 end to end, as users run it: one aggregator (`infernet start --aggregator --fee 1%`),
 * three providers of mnist-8 and stories260k bootstrapped to it, and clients that know only the
 * aggregator's address (`infernet submit`, `infernet job`), all real processes over QUIC on
 * 127.0.0.1. The tests share the network and run in order; the last two kill nodes (SIGKILL).
 */
const net = new TestNetwork();
let aggregator: NodeProcess;
let providers: NodeProcess[];

/** Tokens per prompt in the stories260k job. */
const MAX_TOKENS = 24;
/** Shards of the jobs that kill a node: small, so the job is still running when the kill comes. */
const KILL_SHARD_SIZE = 250;
/** Longest wait for a provider with copies in flight, to kill. */
const BUSY_WAIT_MS = 30_000;

beforeAll(async () => {
  aggregator = await net.start("aggregator", ["--aggregator", "--fee", "1%"]);
  providers = await Promise.all(
    ["p1", "p2", "p3"].map((name) =>
      net.start(name, ["--provider", "--models", "mnist-8,stories260k", "--bootstrap", aggregator.quic]),
    ),
  );
  await Promise.all([
    net.discoverable(aggregator.quic, "mnist-8", providers),
    net.discoverable(aggregator.quic, "stories260k", providers),
  ]);
}, 120_000);

afterAll(async () => {
  await net[Symbol.asyncDispose]();
});

/** A client knows only the aggregator, as its bootstrap peer. */
const network = () => ["--bootstrap", aggregator.quic, "--no-mdns"];
const mnistJob = (shardSize: number) => [
  "--model",
  "mnist-8",
  "--inputs",
  MNIST_IMAGES,
  "--shard-size",
  String(shardSize),
  "--redundancy",
  "2",
];
const events = (stdout: string) =>
  stdout
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as SubmitEvent);
const peerIds = (nodes: NodeProcess[]) => nodes.map((n) => n.status.peerId).sort();
const providersOf = (report: JobReport) =>
  [
    ...new Set(report.shards.flatMap((s) => s.copies.filter((c) => c.state === "verified").map((c) => c.provider))),
  ].sort();

test("MNIST, all 10,000 images, 3 providers, redundancy 2: in order, 9,890 right, every shard verified by 2 providers", async () => {
  const home = net.home("mnist-client");
  const output = join(home, "labels.jsonl");
  const r = await infernet(["submit", ...mnistJob(500), "--output", output, ...network(), "--json"], { home });
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  const lines = events(r.stdout);
  const submitted = lines.find((e) => e.event === "submitted");
  expect(submitted).toMatchObject({ aggregator: aggregator.status.peerId, created: true });
  expect(lines.at(-2)).toMatchObject({ event: "output", path: output, records: MNIST_RECORDS });
  expect(await checkMnistOutput(output)).toBe(MNIST_CORRECT);

  const shown = await infernet(["job", submitted?.jobId ?? "?", "--json", ...network()], { home });
  expect(shown.code).toBe(0);
  const report = JSON.parse(shown.stdout) as JobReport;
  expect(report.job).toMatchObject({ id: submitted?.jobId, state: "verified", shardCount: 20, shardsVerified: 20 });
  expect(report.shards).toHaveLength(20);
  expect(verifiedBy(report, 2)).toBe(true);
  expect(providersOf(report)).toEqual(peerIds(providers));
}, 120_000);

test("64 stories260k prompts across 3 providers: every output is the local greedy output", async () => {
  const home = net.home("prompts-client");
  const prompts = writePrompts(join(home, "prompts.jsonl"));
  const output = join(home, "stories.jsonl");
  const [r, local] = await Promise.all([
    infernet(
      ["submit", "--model", "stories260k", "--prompts", join(home, "prompts.jsonl")]
        .concat(["--max-tokens", String(MAX_TOKENS), "--shard-size", "8", "--output", output])
        .concat([...network(), "--json"]),
      { home },
    ),
    localGreedy(net.home("prompts-local"), prompts, MAX_TOKENS),
  ]);
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  expect(prompts).toHaveLength(64);
  expect(new Set(local).size).toBeGreaterThan(1);
  const lines = await readJsonl<{ index: number; output: string }>(output);
  expect(lines.map((l) => l.index)).toEqual(prompts.map((_, i) => i));
  expect(lines.map((l) => l.output)).toEqual(local);
  const report = events(r.stdout).at(-1)?.report as JobReport;
  expect(report.job.shardCount).toBe(8);
  expect(verifiedBy(report, 2)).toBe(true);
  expect(providersOf(report)).toEqual(peerIds(providers));
}, 120_000);

test("two clients that submit the same input with the same options each get a job of their own", async () => {
  // Default keys come from the content: two users of a public data set derive the same key.
  const submitFrom = async (name: string) => {
    const home = net.home(name);
    const prompts = join(home, "prompts.jsonl");
    await Bun.write(prompts, '{"prompt": "Once upon a time"}\n{"prompt": "One day"}\n');
    const args = ["submit", "--model", "stories260k", "--prompts", prompts, "--max-tokens", "4", "--shard-size", "1"];
    return await infernet([...args, "--output", join(home, "out.jsonl"), ...network(), "--json"], { home });
  };
  const first = await submitFrom("same-input-a");
  const second = await submitFrom("same-input-b");
  expect(first.code).toBe(0);
  expect(second.stderr).not.toContain("infernet:");
  expect(second.code).toBe(0);
  const jobOf = (stdout: string) => events(stdout).find((e) => e.event === "submitted");
  expect(jobOf(second.stdout)).toMatchObject({ created: true });
  expect(jobOf(second.stdout)?.jobId).not.toBe(jobOf(first.stdout)?.jobId);
}, 60_000);

describe("refusals: one clear line, the right exit code, nothing left on the aggregator", () => {
  const heldJobs = async () =>
    (JSON.parse((await infernet(["jobs", "--json"], { home: aggregator.home })).stdout) as { held: unknown[] }).held
      .length;
  let heldBefore: number;
  beforeAll(async () => {
    heldBefore = await heldJobs();
  });

  const refused = async (name: string, args: string[], code: number, says: RegExp) => {
    const home = net.home(name);
    const r = await infernet(["submit", ...args, "--output", join(home, "out.jsonl")], { home });
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(says);
    expect(r.code).toBe(code);
  };

  test("a model served by nobody (squeezenet, when only mnist-8 and stories260k are)", async () => {
    await refused(
      "refuse-model",
      ["--model", "squeezenet", "--inputs", MNIST_IMAGES, ...network()],
      9,
      /^infernet: \w+ answered model-not-served: no provider serves model \w+ \(choose a model that providers announce/,
    );
  }, 60_000);

  test("a price too low (--max-price 1): names the user's price and one that would be accepted", async () => {
    // 10,000 records x 2 copies at the providers' default 10 sats per 1,000 records is 200,000 msat,
    // and the aggregator's 1% fee comes on top: 202,000 msat is the least the job can cost.
    await refused(
      "refuse-price",
      [...mnistJob(500), "--max-price", "1", ...network()],
      9,
      /^infernet: \w+ answered price-too-low: max price 1 msat is below .*\b202000 msat/,
    );
  }, 60_000);

  test("a deadline too short (--deadline 1s on the 10,000-image job)", async () => {
    // Its own key: the content-derived one is the first test's job (the deadline is not part of it).
    await refused(
      "refuse-deadline",
      [...mnistJob(500), "--deadline", "1s", "--key", "deadline-1s", ...network()],
      124,
      /^infernet: \w+ answered deadline-too-short: job .* cannot finish in time/,
    );
  }, 60_000);

  test("no aggregator reachable (--aggregator at an address where nothing listens)", async () => {
    const closed = await closedUdpPort();
    const dead = `/ip4/127.0.0.1/udp/${closed}/quic-v1/p2p/${aggregator.status.peerId}`;
    await refused("refuse-unreachable", [...mnistJob(500), "--aggregator", dead, "--no-mdns"], 9, /could not reach/);
  }, 60_000);

  test("none of them left a job on the aggregator", async () => {
    expect(await heldJobs()).toBe(heldBefore);
  });
});

test("the aggregator killed (SIGKILL) mid-job and restarted on its home and port: the submit reconnects and finishes", async () => {
  const home = net.home("restart-client");
  const output = join(home, "labels.jsonl");
  await using submit = watchedSubmit([...mnistJob(KILL_SHARD_SIZE), "--output", output, ...network()], home);
  await submit.until("a verified shard", (e) => (e.job?.shardsVerified ?? 0) >= 1);
  await net.kill(aggregator);
  aggregator = await net.restart(aggregator);
  const r = await submit.done();
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  expect(r.events.some((e) => e.event === "reconnecting")).toBe(true);
  expect(r.events.at(-2)).toMatchObject({ event: "output", records: MNIST_RECORDS });
  expect(await checkMnistOutput(output)).toBe(MNIST_CORRECT);
  const report = r.events.at(-1)?.report as JobReport;
  expect(report.job.state).toBe("verified");
  expect(report.shards.every((s) => s.state === "verified")).toBe(true);
  // What was in flight when it died was released on restart, not blamed on its providers.
  const released = report.shards.flatMap((s) => s.copies).filter((c) => c.reason === "aggregator restarted");
  expect(released.length).toBeGreaterThan(0);
  expect(released.every((c) => c.state === "reassigned")).toBe(true);
}, 120_000);

test("a provider killed (SIGKILL) mid-job: the job completes right; the report shows its copies reassigned", async () => {
  const home = net.home("kill-client");
  const output = join(home, "labels.jsonl");
  // Another shard size than the restart test's job, so another job.
  await using submit = watchedSubmit([...mnistJob(KILL_SHARD_SIZE - 50), "--output", output, ...network()], home);
  await submit.until("a verified shard", (e) => (e.job?.shardsVerified ?? 0) >= 1);
  const victim = await frozenBusyProvider();
  await net.kill(victim);
  const r = await submit.done();
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  expect(await checkMnistOutput(output)).toBe(MNIST_CORRECT);
  const report = r.events.at(-1)?.report as JobReport;
  expect(report.job.state).toBe("verified");
  // The providers have a verified streak by now: some shards may have had one copy (plus canaries).
  expect(verifiedAsPlanned(report, 2)).toBe(true);
  expect(copiesOf(report, victim.status.peerId, "reassigned").length).toBeGreaterThan(0);
  expect(report.retries).toBeGreaterThan(0);
}, 120_000);

/** A provider with copies of a running job in flight, as the aggregator's status tells. */
async function busyProvider(): Promise<NodeProcess> {
  const deadline = Date.now() + BUSY_WAIT_MS;
  while (Date.now() < deadline) {
    const r = await infernet(["status", "--json"], { home: aggregator.home });
    const inFlight = (JSON.parse(r.stdout) as NodeStatus).aggregator?.inFlight ?? {};
    const busy = providers.find((p) => (inFlight[p.status.peerId] ?? 0) > 0);
    if (busy) return busy;
  }
  throw new Error(`no provider had a copy in flight within ${BUSY_WAIT_MS} ms`);
}

/**
 * A provider stopped (SIGSTOP) while the aggregator still counts copies in flight on it: its copies
 * cannot finish between the look and the kill (a copy of 200 images takes milliseconds, a status
 * query hundreds). One that finished them all before it froze is let go on (SIGCONT) and another looked for.
 */
async function frozenBusyProvider(): Promise<NodeProcess> {
  const deadline = Date.now() + BUSY_WAIT_MS;
  while (Date.now() < deadline) {
    const candidate = await busyProvider();
    candidate.proc.kill("SIGSTOP");
    const r = await infernet(["status", "--json"], { home: aggregator.home });
    const inFlight = (JSON.parse(r.stdout) as NodeStatus).aggregator?.inFlight ?? {};
    if ((inFlight[candidate.status.peerId] ?? 0) > 0) return candidate;
    candidate.proc.kill("SIGCONT");
  }
  throw new Error(`no provider stayed busy within ${BUSY_WAIT_MS} ms`);
}

/** A UDP port on 127.0.0.1 that nothing listens on (bound, then let go). */
async function closedUdpPort(): Promise<number> {
  const socket = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  const { port } = socket;
  socket.close();
  return port;
}
