import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { peerIdFromString } from "@libp2p/peer-id";
import { loadConfig } from "../src/config/index.ts";
import { splitImages } from "../src/jobs/split.ts";
import { InfernetNode } from "../src/node/node.ts";
import type { ShardEvent } from "../src/node/protocols/shard/index.ts";
import { Store } from "../src/store/db.ts";
import { BUN, CLI, infernet } from "./helpers/cli.ts";
import { TestNetwork } from "./helpers/network.ts";
import { MNIST_DIR, STORIES_GREEDY_PREFIX, tempDir } from "./helpers/paths.ts";

/**
 * Real processes on 127.0.0.1 over QUIC: one bootstrap node, three providers of stories260k and
 * mnist-8, and client processes that know only the bootstrap (mDNS off), with no local models.
 */
const net = new TestNetwork();
let bootstrap: string;
let localText: string;
const MAX_TOKENS = "300";

beforeAll(async () => {
  const boot = await net.start("bootstrap", []);
  bootstrap = boot.quic;
  const providers = await Promise.all(
    ["p1", "p2", "p3"].map((name) =>
      net.start(name, ["--provider", "--models", "stories260k,mnist-8", "--price", "10", "--bootstrap", bootstrap]),
    ),
  );
  // A provider is findable once its DHT provider record is stored; wait for that, as a slow machine needs.
  await net.discoverable(bootstrap, "stories260k", providers);
  const local = await infernet(["run", "stories260k", "Once upon a time", "--max-tokens", MAX_TOKENS, "--local"], {
    home: net.home("local"),
  });
  expect(local.code).toBe(0);
  localText = local.stdout;
});

afterAll(async () => {
  await net[Symbol.asyncDispose]();
});

const client = (name: string, args: string[]) =>
  infernet([...args, "--bootstrap", bootstrap, "--no-mdns"], {
    home: net.home(name),
    env: { INFERNET_MODEL_MIRROR: "" },
  });

describe("a client that knows only the bootstrap", () => {
  test("finds all three providers through the DHT", async () => {
    const r = await client("peers-client", ["peers", "--model", "stories260k", "--json"]);
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as { peerId: string; record?: { models: { name: string }[] } }[];
    const providers = net.nodes.filter((n) => n.status.mode === "provider").map((n) => n.status.peerId);
    expect(rows.map((x) => x.peerId).sort()).toEqual(providers.sort());
    expect(rows.every((x) => x.record?.models.some((m) => m.name === "stories260k"))).toBe(true);
    // Each provider measured itself on start and announces the figures.
    for (const row of rows as unknown as {
      record: { hardware: { tokensPerSecond?: number; memoryBandwidthGBps?: number } };
    }[]) {
      expect(row.record.hardware.tokensPerSecond).toBeGreaterThan(0);
      expect(row.record.hardware.memoryBandwidthGBps).toBeGreaterThan(0);
    }
  });

  test("runs stories260k remotely and gets exactly the local greedy text", async () => {
    const r = await client("run-client", [
      "run",
      "stories260k",
      "Once upon a time",
      "--max-tokens",
      MAX_TOKENS,
      "--verbose",
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(localText);
    expect(r.stdout.startsWith(STORIES_GREEDY_PREFIX)).toBe(true);
    expect(r.stderr).toMatch(/running on provider 12D3Koo\w+ \(via ephemeral node\)/);
  });
});

/** Starts a client run and returns its streams, so a test can act while tokens are flowing. */
function streamingRun(home: string, boot: string) {
  const proc = Bun.spawn(
    [
      BUN,
      CLI,
      "run",
      "stories260k",
      "Once upon a time",
      "--max-tokens",
      MAX_TOKENS,
      "--verbose",
      "--bootstrap",
      boot,
      "--no-mdns",
    ],
    {
      env: { ...process.env, INFERNET_HOME: home, INFERNET_MODEL_MIRROR: "" },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  let stdout = "";
  let stderr = "";
  const decoder = new TextDecoder();
  const readOut = (async () => {
    for await (const c of proc.stdout) stdout += decoder.decode(c);
  })();
  const readErr = (async () => {
    for await (const c of proc.stderr) stderr += decoder.decode(c);
  })();
  return {
    proc,
    stdout: () => stdout,
    stderr: () => stderr,
    async until(condition: () => boolean, what: string) {
      const deadline = Date.now() + 30_000;
      while (!condition()) {
        if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`never saw ${what}: ${stderr}`);
        await Bun.sleep(2);
      }
    },
    async done() {
      const code = await proc.exited;
      await Promise.all([readOut, readErr]);
      return { code, stdout, stderr };
    },
  };
}

describe("a running client node (the daemon)", () => {
  test("run, peers and status use it through the control socket", async () => {
    const daemon = await net.start("daemon", ["--bootstrap", bootstrap]);
    const viaDaemon = (args: string[]) => infernet(args, { home: daemon.home, env: { INFERNET_MODEL_MIRROR: "" } });
    const run = await viaDaemon(["run", "stories260k", "Once upon a time", "--max-tokens", MAX_TOKENS, "--verbose"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(localText);
    expect(run.stderr).toMatch(/running on provider 12D3Koo\w+ \(via daemon node\)/);

    const status = await viaDaemon(["status", "--json"]);
    expect(status.code).toBe(0);
    const s = JSON.parse(status.stdout);
    expect(s.peerId).toBe(daemon.status.peerId);
    expect(s.mode).toBe("client");
    expect(s.connections).toBeGreaterThanOrEqual(1);

    const peers = JSON.parse((await viaDaemon(["peers", "--model", "stories260k", "--json"])).stdout) as unknown[];
    expect(peers.length).toBeGreaterThanOrEqual(1);
  });

  test("status without a running node says how to start one", async () => {
    const r = await infernet(["status"], { home: net.home("no-daemon") });
    expect(r.code).toBe(10);
    expect(r.stderr).toMatch(/no node is running .* \(start one with `infernet start`\)/);
  });
});

describe("ONNX over the network", () => {
  test("mnist-8 on 100 real MNIST images remotely gives exactly the local answers", async () => {
    using dir = tempDir();
    const images = join(dir.path, "100-images.idx");
    const labels = join(dir.path, "100-labels.idx");
    const allImages = gunzipSync(readFileSync(join(MNIST_DIR, "t10k-images-idx3-ubyte.gz")));
    const allLabels = gunzipSync(readFileSync(join(MNIST_DIR, "t10k-labels-idx1-ubyte.gz")));
    // IDX headers: magic, count, (rows, cols); rewrite the count to 100.
    const imageHead = Buffer.from(allImages.subarray(0, 16));
    imageHead.writeUInt32BE(100, 4);
    writeFileSync(images, Buffer.concat([imageHead, allImages.subarray(16, 16 + 100 * 784)]));
    const labelHead = Buffer.from(allLabels.subarray(0, 8));
    labelHead.writeUInt32BE(100, 4);
    writeFileSync(labels, Buffer.concat([labelHead, allLabels.subarray(8, 108)]));
    const args = ["run", "mnist-8", "--input", images, "--labels", labels, "--json"];
    const local = await infernet([...args, "--local"], { home: net.home("onnx-local") });
    const remote = await client("onnx-client", [...args, "--verbose"]);
    expect(local.code).toBe(0);
    expect(remote.code).toBe(0);
    expect(remote.stderr).toMatch(/running on provider/);
    expect(remote.stdout).toBe(local.stdout);
    expect(remote.stdout.trim().split("\n")).toHaveLength(101);
  });
});

describe("batch shards", () => {
  test("a provider node runs a 200-image MNIST shard sent over /infernet/shard/1.0.0", async () => {
    using dir = tempDir();
    const config = loadConfig({
      env: { INFERNET_HOME: dir.path, INFERNET_BOOTSTRAP: bootstrap, INFERNET_MDNS: "false" },
    });
    using store = Store.open(dir.path);
    await using node = await InfernetNode.start({ config, store, ephemeral: true });
    await using splitter = await splitImages(join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"), { shardSize: 200 });
    const { value: shard } = await splitter.shards().next();
    const mnist = { name: "mnist-8", sha256: "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf" };
    // As an aggregator would: find a provider of the model (this also gives its addresses) and send it the shard.
    const [provider] = await node.capability.findProviders(mnist.sha256);
    expect(provider).toBeDefined();
    let done: ShardEvent | undefined;
    let partials = 0;
    for await (const event of node.host.services.shard.runShard(peerIdFromString(provider!.peerId), mnist, shard!)) {
      if (event.type === "partial") partials += 1;
      else done = event;
    }
    expect(partials).toBeGreaterThanOrEqual(1);
    expect(done?.type).toBe("done");
    expect(done?.type === "done" && done.usage.records).toBe(200);
  });
});

describe("failover", () => {
  test("a provider killed (SIGKILL) mid-stream: the stream continues on another; the text is the local one", async () => {
    const run = streamingRun(net.home("failover-client"), bootstrap);
    await run.until(() => /running on provider (\w+)/.test(run.stderr()), "the provider line");
    const victim = net.byPeerId(/running on provider (\w+)/.exec(run.stderr())![1]!)!;
    await run.until(() => run.stdout().length > 0, "the first tokens");
    victim.proc.kill("SIGKILL");
    const r = await run.done();
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(localText);
    expect(r.stderr).toMatch(/continuing after \d+ tokens on provider/);
  });

  test("with no other provider: a clear error, never a hang", async () => {
    await using solo = new TestNetwork();
    const boot = await solo.start("bootstrap", []);
    const only = await solo.start("only", ["--provider", "--models", "stories260k", "--bootstrap", boot.quic]);
    await solo.discoverable(boot.quic, "stories260k", [only]);
    const run = streamingRun(solo.home("client"), boot.quic);
    await run.until(() => run.stdout().length > 0, "the first tokens");
    only.proc.kill("SIGKILL");
    const r = await run.done();
    expect(r.code).toBe(9);
    expect(r.stderr).toMatch(/every provider of stories260k failed/);
    expect(localText.startsWith(r.stdout.trimEnd())).toBe(true);
  });
});
