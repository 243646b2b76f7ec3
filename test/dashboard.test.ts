import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { canaryCount } from "../src/jobs/verify/canaries.ts";
import type { NodeStatus } from "../src/node/node.ts";
import { BUN, CLI, finish, infernet, spawnInfernet } from "./helpers/cli.ts";
import { type NodeProcess, TEST_LISTEN, TestNetwork } from "./helpers/network.ts";
import { MNIST_DIR, ROOT, SHARED_MODELS } from "./helpers/paths.ts";
import { REQUIRE_TMUX, SANE, TMUX, Tmux } from "./helpers/tmux.ts";

/**
 * The dashboard end to end, in a real pseudo-terminal (test/helpers/tmux.ts), driven with keys and
 * read back from the screen: `infernet dash` attached to a real provider process, and `infernet
 * start` on a terminal, where the dashboard owns the node, shows the shards of a job a real client
 * submitted, adds a model, and stops the node with `q`.
 */
/** The attached dashboard's pane: narrow layout (under 120 columns), as over a small SSH window. */
const NARROW = { columns: 100, rows: 30 };
/** Wide enough for every panel at once (the Jobs panel beside the hardware). */
const WIDE = { columns: 150, rows: 45 };
/** Printed by the pane's shell after the command returns, with its exit code. */
const EXIT_MARK = "DASH-EXIT=";
/** Shards of the client's job; each runs on both providers (redundancy 2). */
const SHARDS = 4;

const net = new TestNetwork();
const tmux = new Tmux();
let provider: NodeProcess;

beforeAll(async () => {
  if (!TMUX) return;
  provider = await net.start("provider", ["--provider", "--models", "stories260k"]);
});

afterAll(async () => {
  tmux.kill();
  await net[Symbol.asyncDispose]();
});

/** A shell command line running the CLI from source with this home (and `extra` environment). */
function cli(home: string, args: string[], extra: Record<string, string> = {}): string {
  const vars = { INFERNET_HOME: home, INFERNET_MODEL_MIRROR: SHARED_MODELS, INFERNET_MDNS: "false", ...extra };
  const env = Object.entries(vars)
    .map(([k, v]) => `${k}='${v}'`)
    .join(" ");
  return `cd '${ROOT}' && ${env} '${BUN}' ${[CLI, ...args].map((a) => `'${a}'`).join(" ")}`;
}

test.if(!TMUX)("tmux is missing: the terminal tests are skipped (a failure where CI requires them)", () => {
  expect(REQUIRE_TMUX ? "tmux is missing" : "").toBe("");
});

test.skipIf(!TMUX)(
  "the dashboard attaches to a running provider, shows it, and q leaves the terminal sane",
  async () => {
    const pane = "dash";
    tmux.session(pane, NARROW.columns, NARROW.rows);
    tmux.command(pane, cli(provider.home, ["dash"]), EXIT_MARK);

    // Narrow layout: the header shows the node's short id (its last 8 characters).
    const id = provider.status.peerId.slice(-8);
    const first = await tmux.until(pane, (s) => s.includes(`…${id}`) && s.includes("Hardware"));
    expect(first).toContain("provider");
    expect(first).toContain("serving");
    expect(tmux.run("display", "-p", "-t", pane, "#{alternate_on}").trim()).toBe("1");

    // The jobs panel shows what the provider serves.
    tmux.send(pane, "Tab");
    await tmux.until(pane, (s) => s.includes("▸ Jobs") && s.includes("serving stories260k"));

    // p pauses serving on the node itself: a headless `infernet status` would see it the same way.
    tmux.send(pane, "p");
    await tmux.until(pane, (s) => s.includes("PAUSED"));
    tmux.send(pane, "p");
    await tmux.until(pane, (s) => !s.includes("PAUSED") && s.includes("serving stories260k"));

    // Resized to a wide terminal, every panel shows at once; back to narrow, one panel and the tabs.
    tmux.run("resize-window", "-t", pane, "-x", String(WIDE.columns), "-y", String(WIDE.rows));
    await tmux.until(pane, (s) => ["Hardware", "Earnings", "Network", "Log"].every((p) => s.includes(`│ ${p}`)));
    tmux.run("resize-window", "-t", pane, "-x", String(NARROW.columns), "-y", String(NARROW.rows));
    await tmux.until(pane, (s) => s.includes("▸ Jobs") && !s.includes("│ Network"));

    // q detaches: the node keeps running.
    tmux.send(pane, "q");
    expect(await tmux.exited(pane, EXIT_MARK)).toContain(`${EXIT_MARK}0`);
    expect(await tmux.terminalState(pane)).toEqual(SANE);
    expect((await infernet(["status", "--json"], { home: provider.home })).code).toBe(0);
  },
  120_000,
);

test.skipIf(!TMUX)(
  "infernet start on a terminal: the provider's dashboard shows a client's job computed, adds a model, and q stops the node",
  async () => {
    const aggregator = await net.start("aggregator", ["--aggregator"]);
    const other = await net.start("other", ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic]);
    const home = net.home("pane-provider");
    const pane = "owner";
    tmux.session(pane, WIDE.columns, WIDE.rows);
    tmux.command(
      pane,
      cli(home, ["start", "--provider", "--models", "mnist-8", ...TEST_LISTEN, "--bootstrap", aggregator.quic]),
      EXIT_MARK,
    );
    await tmux.until(pane, (s) => s.includes("▸ Hardware") && s.includes("serving mnist-8"));
    // The node in the pane answers headless commands like any other: the dashboard is only its client.
    const status = JSON.parse((await infernet(["status", "--json"], { home })).stdout) as NodeStatus;
    expect(status.models.map((m) => m.name)).toEqual(["mnist-8"]);
    await net.discoverable(aggregator.quic, "mnist-8", [{ status }, other]);

    // A client submits a job to the aggregator; every shard runs on both providers, so on this one too.
    const client = net.home("client");
    const submit = await infernet(
      [
        "submit",
        "--model",
        "mnist-8",
        "--inputs",
        join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"),
        "--shards",
        String(SHARDS),
        "--aggregator",
        aggregator.quic,
        "--output",
        join(client, "labels.jsonl"),
        "--no-mdns",
      ],
      { home: client },
    );
    expect(submit.code).toBe(0);
    // The Jobs panel: each shard done for the aggregator, every record counted, and the served total.
    // A shard of 2,500 images arrives with the aggregator's canaries mixed in (jobs/verify/canaries.ts).
    const agg = aggregator.status.peerId.slice(-8);
    const records = 2500 + canaryCount(2500);
    const done = new RegExp(`shard +mnist-8 +…${agg} █+ +${records}/${records} rec done`, "g");
    const jobs = await tmux.until(pane, (s) => (s.match(done)?.length ?? 0) === SHARDS);
    expect(jobs).toContain(`0 running  0 queued  ${SHARDS} served  0 failed`);

    // m: add stories260k from the catalog (fetched from the mirror), and the node serves it.
    tmux.send(pane, "m");
    await tmux.until(pane, (s) => s.includes("Models served by this node") && /\[x\] mnist-8/.test(s));
    tmux.send(pane, "Enter"); // the cursor starts on the first entry, stories260k
    await tmux.until(pane, (s) => /\[x\] stories260k/.test(s));
    const after = JSON.parse((await infernet(["status", "--json"], { home })).stdout) as NodeStatus;
    expect(after.models.map((m) => m.name).sort()).toEqual(["mnist-8", "stories260k"]);
    // Esc closes the list; the next key waits for that (an esc and a key in one chunk read as alt-key).
    tmux.send(pane, "Escape");
    await tmux.until(pane, (s) => !s.includes("Models served by this node") && s.includes("▸ Hardware"));

    // q with nothing running stops the node at once; the shell gets the terminal back, sane.
    tmux.send(pane, "q");
    const end = await tmux.exited(pane, EXIT_MARK);
    expect(end).toContain(`Infernet node ${status.peerId} stopped.`);
    expect(end).toContain(`${EXIT_MARK}0`);
    expect((await infernet(["status", "--json"], { home })).code).not.toBe(0);
    expect(await tmux.terminalState(pane)).toEqual(SANE);
  },
  180_000,
);

test.skipIf(!TMUX)(
  "infernet alone on a terminal: attaches to the node running here, or starts one with the dashboard",
  async () => {
    const pane = "bare";
    tmux.session(pane, NARROW.columns, NARROW.rows);
    // A node runs with this home: `infernet` attaches, and q leaves the node running.
    tmux.command(pane, cli(provider.home, []), EXIT_MARK);
    await tmux.until(pane, (s) => s.includes(`…${provider.status.peerId.slice(-8)}`) && s.includes("q quit"));
    tmux.send(pane, "q");
    expect(await tmux.exited(pane, EXIT_MARK)).toContain(`${EXIT_MARK}0`);
    expect((await infernet(["status", "--json"], { home: provider.home })).code).toBe(0);

    // None runs with this home: `infernet` starts a client node (no `serve` setting) and owns it.
    const home = net.home("bare-node");
    tmux.send(pane, "clear", "Enter");
    tmux.command(pane, cli(home, [], { INFERNET_LISTEN: "/ip4/127.0.0.1/udp/0/quic-v1" }), EXIT_MARK);
    await tmux.until(pane, (s) => s.includes("client") && s.includes("q stop node"));
    const status = JSON.parse((await infernet(["status", "--json"], { home })).stdout) as NodeStatus;
    expect(status.mode).toBe("client");
    expect(status.addresses.every((a) => a.startsWith("/ip4/127.0.0.1/udp/"))).toBe(true);
    tmux.send(pane, "q");
    expect(await tmux.exited(pane, EXIT_MARK)).toContain(`Infernet node ${status.peerId} stopped.`);
    expect(await tmux.terminalState(pane)).toEqual(SANE);
  },
  120_000,
);

/** Prompts of the long shard the drain waits for: at ~1,300 tokens/s here, about 10 s of work. */
const DRAIN_PROMPTS = 32;
const DRAIN_TOKENS = 400;

test.skipIf(!TMUX)(
  "q on a node that is computing a shard: it takes no new work, finishes the shard, then stops",
  async () => {
    const aggregator = await net.start("drain-aggregator", ["--aggregator"]);
    const home = net.home("drain-provider");
    const pane = "drain";
    tmux.session(pane, WIDE.columns, WIDE.rows);
    tmux.command(
      pane,
      cli(home, ["start", "--provider", "--models", "stories260k", ...TEST_LISTEN, "--bootstrap", aggregator.quic]),
      EXIT_MARK,
    );
    await tmux.until(pane, (s) => s.includes("serving stories260k"));
    const status = JSON.parse((await infernet(["status", "--json"], { home })).stdout) as NodeStatus;
    await net.discoverable(aggregator.quic, "stories260k", [{ status }]);

    const client = net.home("drain-client");
    const prompts = join(client, "prompts.jsonl");
    await Bun.write(
      prompts,
      Array.from(
        { length: DRAIN_PROMPTS },
        (_, i) => `${JSON.stringify({ prompt: `Story ${i}: once upon a time` })}\n`,
      ),
    );
    const output = join(client, "stories.jsonl");
    const submit = spawnInfernet(
      [
        "submit",
        "--model",
        "stories260k",
        "--prompts",
        prompts,
        "--max-tokens",
        String(DRAIN_TOKENS),
        "--shards",
        "1",
        "--redundancy",
        "1",
        "--aggregator",
        aggregator.quic,
        "--output",
        output,
        "--no-mdns",
      ],
      { home: client },
    );
    // The shard is computing on the pane's node; q now asks it to stop.
    await tmux.until(pane, (s) => s.includes("  1 running  0 queued"));
    tmux.send(pane, "q");
    await tmux.until(pane, (s) => s.includes("stopping the node: 1 request(s)/shard(s) still running"));
    const end = await tmux.exited(pane, EXIT_MARK);
    expect(end).toContain(`${EXIT_MARK}0`);

    // The shard was finished, not cut: the job completed with this node's outputs for every prompt.
    const result = await finish(submit);
    expect(result.code).toBe(0);
    const lines = (await Bun.file(output).text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { index: number; output: string; providers: string[] });
    expect(lines).toHaveLength(DRAIN_PROMPTS);
    expect(lines.every((l) => l.output.length > 0 && l.providers.includes(status.peerId))).toBe(true);
    expect(await tmux.terminalState(pane)).toEqual(SANE);
  },
  180_000,
);
