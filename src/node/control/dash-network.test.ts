import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { render } from "ink-testing-library";
import { createElement } from "react";
import { infernet } from "../../../test/helpers/cli.ts";
import { type NodeProcess, TestNetwork } from "../../../test/helpers/network.ts";
import { MNIST_DIR } from "../../../test/helpers/paths.ts";
import { DashboardClient } from "../../tui/client.ts";
import { Dashboard } from "../../tui/dashboard.tsx";
import type { DashboardSnapshot } from "../../tui/state.ts";
import { themeFor } from "../../tui/theme.ts";
import { INITIAL_UI } from "../../tui/ui.ts";

/**
 * The dashboard's data from real `infernet start` processes on 127.0.0.1 (an aggregator and two
 * providers of mnist-8 and stories260k), read through the real control socket with the dashboard's
 * client: what the panels get (and how they draw it), a real MNIST job on the aggregator, and pausing
 * a provider.
 */
const IMAGES = join(MNIST_DIR, "t10k-images-idx3-ubyte.gz");
const MODELS = ["--provider", "--models", "mnist-8,stories260k"];
/** Snapshots taken in a row to measure what one costs (printed, not asserted). */
const TIMED_SNAPSHOTS = 50;

const net = new TestNetwork();
let aggregator: NodeProcess;
let p1: NodeProcess;
let p2: NodeProcess;

beforeAll(async () => {
  aggregator = await net.start("aggregator", ["--aggregator"]);
  [p1, p2] = await Promise.all([
    net.start("p1", [...MODELS, "--bootstrap", aggregator.quic]),
    net.start("p2", [...MODELS, "--bootstrap", aggregator.quic]),
  ]);
  await net.discoverable(aggregator.quic, "mnist-8", [p1, p2]);
});

afterAll(async () => {
  await net[Symbol.asyncDispose]();
});

test("a provider's snapshot: its id, mode, models, no jobs, its peers, hardware and its own log", async () => {
  const client = await DashboardClient.connect(p1.home);
  const snap = await client.snapshot(AbortSignal.timeout(10_000));
  expect(snap.node.peerId).toBe(p1.status.peerId);
  expect(snap.node.modes).toEqual(["provider"]);
  expect(snap.node.addresses.some((a) => a.includes("/quic-v1/"))).toBe(true);
  // Both runtimes serve: the llama backend is asked once the first snapshot loaded it (CPU here).
  expect(snap.hardware.engine).toMatch(/^llama\.cpp \S+ \+ onnxruntime cpu$/);
  // Listening on 127.0.0.1 only: nobody outside this machine can dial it.
  expect(snap.node.reachability).toBe("private");
  expect(snap.serving.accepting).toBe(true);
  expect(snap.serving.models.map((m) => m.name).sort()).toEqual(["mnist-8", "stories260k"]);
  expect(snap.serving.models.every((m) => /^[0-9a-f]{64}$/.test(m.sha256))).toBe(true);
  expect(snap.jobs).toEqual([]);
  expect(snap.peers.find((p) => p.peerId === aggregator.status.peerId)?.connected).toBe(true);
  expect(snap.peers.some((p) => p.peerId === p1.status.peerId)).toBe(false);
  expect(snap.hardware.cpu.cores).toBeGreaterThan(0);
  expect(snap.hardware.memory.totalBytes).toBeGreaterThan(snap.hardware.memory.usedBytes);
  expect(snap.earnings).toEqual({ incomeMsat: "0", feesMsat: "0", escrowMsat: "0", owedMsat: "0", paying: 0, paid: 0 });
  expect(snap.log.some((l) => l.msg === "node started" && l.ns === "node" && l.level === "info")).toBe(true);
  expect(snap.takenAt).toBeGreaterThanOrEqual(snap.node.startedAt);

  const started = performance.now();
  for (let i = 0; i < TIMED_SNAPSHOTS; i++) await client.snapshot();
  const ms = (performance.now() - started) / TIMED_SNAPSHOTS;
  console.log(`dashboard snapshot through the socket: ${ms.toFixed(2)} ms each (${TIMED_SNAPSHOTS} in a row)`);
});

test("a small MNIST job submitted to the aggregator shows in its snapshot; providers show the work served", async () => {
  const home = net.home("mnist-client");
  const r = await infernet(
    [
      "submit",
      "--model",
      "mnist-8",
      "--inputs",
      IMAGES,
      "--shards",
      "2",
      "--aggregator",
      aggregator.quic,
      "--output",
      join(home, "labels.jsonl"),
      "--no-mdns",
      "--json",
    ],
    { home },
  );
  expect(r.stderr).not.toContain("infernet:");
  expect(r.code).toBe(0);
  const submitted = r.stdout
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as { event?: string; jobId?: string })
    .find((e) => e.event === "submitted");
  const snap = await (await DashboardClient.connect(aggregator.home)).snapshot();
  afterJob.aggregator = snap;
  expect(snap.node.modes).toEqual(["aggregator"]);
  expect(snap.jobs).toHaveLength(1);
  expect(snap.jobs[0]).toMatchObject({
    id: submitted?.jobId,
    model: "mnist-8",
    state: "verified",
    shardCount: 2,
    shardsVerified: 2,
    retries: 0,
  });
  expect(snap.jobs[0]?.finishedAt).toBeGreaterThanOrEqual(snap.jobs[0]?.createdAt ?? Number.POSITIVE_INFINITY);
  const served = await Promise.all([p1, p2].map(async (p) => (await DashboardClient.connect(p.home)).snapshot()));
  afterJob.providers = served;
  expect(served.reduce((n, s) => n + s.serving.served, 0)).toBeGreaterThan(0);
  expect(served.some((s) => (s.serving.ratePerSecond ?? 0) > 0)).toBe(true);
  expect(served.every((s) => s.serving.active === 0 && s.serving.queued === 0)).toBe(true);
  // Each shard a provider computed is in its work list: the aggregator's, done, every record counted.
  const work = served.flatMap((s) => s.serving.work);
  expect(work.length).toBeGreaterThan(0);
  for (const w of work) {
    expect(w).toMatchObject({ kind: "shard", model: "mnist-8", peer: aggregator.status.peerId, outcome: "done" });
    expect(w.done).toBe(w.total ?? -1);
  }
});

/** Snapshots taken right after the MNIST job, drawn by the panels below. */
const afterJob: { aggregator?: DashboardSnapshot; providers?: DashboardSnapshot[] } = {};

/** The whole screen for a snapshot, as `infernet dash` draws it, with the Jobs panel focused. */
function draw(snapshot: DashboardSnapshot, columns: number, rows: number): string {
  const ui = { ...INITIAL_UI, focus: "jobs" as const };
  const frame = render(createElement(Dashboard, { snapshot, ui, theme: themeFor(true), columns, rows, status: {} }));
  const text = frame.lastFrame() ?? "";
  frame.unmount();
  return text;
}

test("the panels drawn from these real snapshots: the verified job on the aggregator, the shards on a provider", () => {
  const { aggregator: held, providers } = afterJob;
  if (!held || !providers) throw new Error("the MNIST job test did not run");
  const job = held.jobs[0];
  for (const [columns, rows] of [
    [80, 24],
    [140, 40],
  ] as const) {
    const screen = draw(held, columns, rows);
    expect(screen).toContain(`job ${job?.id.slice(0, 8)} mnist-8`);
    expect(screen).toMatch(/2\/2 verified/);
    expect(screen).toContain("aggregator");
  }
  const busiest = providers.reduce((a, b) => (b.serving.work.length > a.serving.work.length ? b : a));
  const shard = busiest.serving.work[0];
  const screen = draw(busiest, 140, 40);
  expect(screen).toContain(`…${aggregator.status.peerId.slice(-8)}`);
  expect(screen).toContain(`${shard?.done}/${shard?.total} rec done`);
  expect(screen).toContain("serving mnist-8, stories260k");
  // The network panel lists the aggregator and the other provider with what they serve.
  expect(screen).toMatch(/mnist-8, stories260k|stories260k, mnist-8/);
});

/** Runs stories260k from a fresh client that knows only the aggregator; the provider that finished it. */
async function runStory(name: string): Promise<string | undefined> {
  const r = await infernet(
    [
      "run",
      "stories260k",
      "Once upon a time",
      "--max-tokens",
      "20",
      "--verbose",
      "--bootstrap",
      aggregator.quic,
      "--no-mdns",
    ],
    { home: net.home(name), env: { INFERNET_MODEL_MIRROR: "" } },
  );
  expect(r.code).toBe(0);
  return [...r.stderr.matchAll(/provider (12D3Koo\w+) \(via/g)].at(-1)?.[1];
}

test("pausing a provider sends requests to the other one; resuming brings it back", async () => {
  const one = await DashboardClient.connect(p1.home);
  const two = await DashboardClient.connect(p2.home);
  expect(await one.setServing(false)).toBe(false);
  expect((await one.snapshot()).serving.accepting).toBe(false);
  // Paused twice is still paused; the other provider is untouched.
  expect(await one.setServing(false)).toBe(false);
  expect((await two.snapshot()).serving.accepting).toBe(true);
  expect(await runStory("paused-1")).toBe(p2.status.peerId);

  expect(await one.setServing(true)).toBe(true);
  expect(await two.setServing(false)).toBe(false);
  expect(await runStory("paused-2")).toBe(p1.status.peerId);
  expect(await two.setServing(true)).toBe(true);
  const log = (await one.snapshot()).log.map((l) => l.msg);
  expect(log).toContain("serving paused");
  expect(log).toContain("serving resumed");
});

test("pausing is refused on a node that serves nothing, and a bad body is a usage error", async () => {
  const client = await DashboardClient.connect(aggregator.home);
  await expect(client.setServing(false)).rejects.toMatchObject({ name: "UsageError" });
  const res = await fetch("http://infernet/v1/serving", {
    unix: join(p1.home, "control.sock"),
    method: "POST",
    body: JSON.stringify({ accepting: "no" }),
  });
  expect(res.status).toBe(400);
  expect(await res.json()).toMatchObject({ type: "error", name: "UsageError" });
  expect((await (await DashboardClient.connect(p1.home)).snapshot()).serving.accepting).toBe(true);
});
