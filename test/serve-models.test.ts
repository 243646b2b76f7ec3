import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { ControlClient } from "../src/node/control/client.ts";
import { DashboardClient } from "../src/tui/client.ts";
import type { ServeProgress } from "../src/tui/state.ts";
import { infernet } from "./helpers/cli.ts";
import { type NodeProcess, TestNetwork } from "./helpers/network.ts";
import { MNIST_DIR } from "./helpers/paths.ts";

/**
 * Serving and unserving a model on a running node, as the dashboard's `m` does: real `infernet start`
 * processes on 127.0.0.1 (a hub, and a node started without models), the real control socket, and
 * other nodes finding the model through the capability directory and running MNIST digits on it.
 */
const IMAGES = 10;
/** `infernet run` exits with this when no provider serves the model (cli/exit.ts). */
const EXIT_NO_PROVIDER = 9;

const net = new TestNetwork();
let hub: NodeProcess;
let node: NodeProcess;
let digits: string;

beforeAll(async () => {
  hub = await net.start("hub", []);
  node = await net.start("node", ["--bootstrap", hub.quic]);
  // IDX header: magic, count, rows, cols; the count rewritten to IMAGES.
  const all = gunzipSync(readFileSync(join(MNIST_DIR, "t10k-images-idx3-ubyte.gz")));
  const head = Buffer.from(all.subarray(0, 16));
  head.writeUInt32BE(IMAGES, 4);
  digits = join(net.home("inputs"), "digits.idx");
  writeFileSync(digits, Buffer.concat([head, all.subarray(16, 16 + IMAGES * 784)]));
});

afterAll(async () => {
  await net[Symbol.asyncDispose]();
});

/** `infernet run mnist-8` on the digits, on the network only, from `home`. */
const runMnist = (home: string) =>
  infernet(
    ["run", "mnist-8", "--input", digits, "--json", "--remote", "--verbose", "--bootstrap", hub.quic, "--no-mdns"],
    {
      home,
      env: { INFERNET_MODEL_MIRROR: "" },
    },
  );

const savedServe = () =>
  (JSON.parse(readFileSync(join(node.home, "config.json"), "utf8")) as { serve?: string[] }).serve;

test("a node started without models serves mnist-8 when asked; other nodes find it and run on it", async () => {
  expect(node.status.mode).toBe("client");
  const dashboard = await DashboardClient.connect(node.home);
  const progress: ServeProgress[] = [];
  await dashboard.serveModel("mnist-8", (p) => progress.push(p), AbortSignal.timeout(60_000));
  expect(progress.some((p) => p.phase === "download" || p.phase === "verify")).toBe(true);
  expect(progress.at(-1)?.phase).toBe("load");

  const status = await (await ControlClient.require(node.home)).status();
  expect(status.mode).toBe("provider");
  expect(status.models.map((m) => m.name)).toEqual(["mnist-8"]);
  expect(savedServe()).toEqual(["mnist-8"]);
  expect((await dashboard.models()).find((m) => m.name === "mnist-8")).toMatchObject({ cached: true, served: true });

  await net.discoverable(hub.quic, "mnist-8", [node]);
  const fresh = await runMnist(net.home("runner-1"));
  expect(fresh.stderr).toContain(`provider ${node.status.peerId}`);
  expect(fresh.code).toBe(0);
  expect(fresh.stdout.trim().split("\n")).toHaveLength(IMAGES);
  // The hub, a long-running node, heard of it too: a run through it lands on the node.
  const viaHub = await runMnist(hub.home);
  expect(viaHub.stderr).toContain(`provider ${node.status.peerId} (via daemon node)`);
  expect(viaHub.code).toBe(0);
});

test("an unknown model is a clear error, and changes nothing", async () => {
  const dashboard = await DashboardClient.connect(node.home);
  await expect(dashboard.serveModel("mnist-9", () => {})).rejects.toMatchObject({
    name: "UnknownModelError",
    hint: expect.stringContaining('"mnist-8"'),
  });
  expect((await dashboard.snapshot()).serving.models.map((m) => m.name)).toEqual(["mnist-8"]);
  expect(savedServe()).toEqual(["mnist-8"]);
});

test("unserved: a fresh node finds no provider, the hub's request is refused, the node is a client again", async () => {
  const dashboard = await DashboardClient.connect(node.home);
  await dashboard.unserveModel("mnist-8");
  expect(savedServe()).toEqual([]);
  const status = await (await ControlClient.require(node.home)).status();
  expect(status).toMatchObject({ mode: "client", models: [] });

  const fresh = await runMnist(net.home("runner-2"));
  expect(fresh.code).toBe(EXIT_NO_PROVIDER);
  expect(fresh.stderr).toContain("no provider on the network serves mnist-8");
  // The hub may still hold the node's last record (until it expires): the node refuses the request.
  const viaHub = await runMnist(hub.home);
  expect(viaHub.code).toBe(EXIT_NO_PROVIDER);
  expect(viaHub.stderr).toMatch(/answered model-not-served|no provider on the network serves mnist-8/);
  expect(await dashboard.unserveModel("mnist-8").catch((e: unknown) => e)).toMatchObject({ name: "UsageError" });
});
