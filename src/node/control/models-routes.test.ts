import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SHARED_MODELS, tempDir } from "../../../test/helpers/paths.ts";
import { type RangeServer, rangeServer } from "../../../test/helpers/range-server.ts";
import { loadConfig } from "../../config/index.ts";
import { catalog } from "../../models/catalog.ts";
import { Store } from "../../store/db.ts";
import { DashboardClient } from "../../tui/client.ts";
import type { ServeProgress } from "../../tui/state.ts";
import { InfernetNode } from "../node.ts";
import { MAX_MODEL_BODY_BYTES, SERVE_MODEL_PATH, UNSERVE_MODEL_PATH } from "./models-protocol.ts";
import { type ControlServer, startControlServer } from "./server.ts";

/**
 * The model manager's routes on a real in-process node (client mode, QUIC on 127.0.0.1) and its real
 * control socket, driven by the dashboard's client. Models come from a local HTTP mirror serving the
 * shared model files, so a download can be held mid-file to test a client that goes away.
 */
const SQUEEZENET = "squeezenet1.1-fp16.onnx";
/** Where the mirror holds the squeezenet download (past the first chunks, well before the end). */
const STALL_AT = 512 * 1024;
/**
 * The mirror sends that much in small, spaced chunks, so the download reports bytes arriving before
 * it stalls (progress is throttled: a burst of chunks arriving at once reports none of them).
 */
const SLOW_CHUNK_BYTES = 16 * 1024;
const SLOW_CHUNK_DELAY_MS = 20;

const dir = tempDir("infernet-models-routes-");
let mirror: RangeServer;
let store: Store;
let node: InfernetNode;
let server: ControlServer;
let client: DashboardClient;

beforeAll(async () => {
  mirror = rangeServer({
    "/mnist-8.onnx": join(SHARED_MODELS, "mnist-8.onnx"),
    [`/${SQUEEZENET}`]: join(SHARED_MODELS, SQUEEZENET),
    "/squeezenet1.1-labels.json": join(SHARED_MODELS, "squeezenet1.1-labels.json"),
    "/stories260K.gguf": join(SHARED_MODELS, "stories260K.gguf"),
  });
  const config = loadConfig({
    env: {
      INFERNET_HOME: dir.path,
      INFERNET_MODEL_MIRROR: mirror.url,
      INFERNET_LISTEN: "/ip4/127.0.0.1/udp/0/quic-v1",
      INFERNET_MDNS: "false",
    },
  });
  store = Store.open(dir.path);
  node = await InfernetNode.start({ config, store });
  server = await startControlServer(node, dir.path);
  client = await DashboardClient.connect(dir.path);
});

afterAll(async () => {
  await server?.stop();
  await node?.stop();
  store?.close();
  await mirror?.stop();
  dir[Symbol.dispose]();
});

const post = (path: string, body: string) =>
  fetch(`http://infernet${path}`, { unix: server.path, method: "POST", body });
const savedServe = () =>
  (JSON.parse(readFileSync(join(dir.path, "config.json"), "utf8")) as { serve?: string[] }).serve;

test("a fresh client node lists the whole catalog, nothing downloaded or served, and announces nothing", async () => {
  const models = await client.models();
  expect(models.map((m) => m.name)).toEqual(catalog().map((m) => m.name));
  expect(models.every((m) => !m.cached && !m.served && m.sizeBytes > 0)).toBe(true);
  expect(models.find((m) => m.name === "mnist-8")).toMatchObject({ runtime: "onnx" });
  expect(node.status().mode).toBe("client");
  expect(node.capability.current()).toBeUndefined();
});

test("bad requests are usage errors; an unknown model says which names are close", async () => {
  for (const [path, body] of [
    [SERVE_MODEL_PATH, "not json"],
    [SERVE_MODEL_PATH, JSON.stringify({ name: 8 })],
    [SERVE_MODEL_PATH, JSON.stringify({ name: "" })],
    [SERVE_MODEL_PATH, JSON.stringify({ name: "mnist-8", extra: true })],
    [SERVE_MODEL_PATH, JSON.stringify({ name: "x".repeat(MAX_MODEL_BODY_BYTES) })],
    [UNSERVE_MODEL_PATH, "[]"],
  ] as const) {
    const res = await post(path, body);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ type: "error", name: "UsageError" });
  }
  const unknown = client.serveModel("mnist-9", () => {});
  await expect(unknown).rejects.toMatchObject({ name: "UnknownModelError", message: 'unknown model "mnist-9"' });
  await expect(unknown).rejects.toMatchObject({ hint: expect.stringContaining('"mnist-8"') });
  await expect(client.unserveModel("mnist-8")).rejects.toMatchObject({ name: "UsageError" });
  expect(node.serving).toEqual([]);
  expect(existsSync(join(dir.path, "config.json"))).toBe(false);
});

test("serving mnist-8: two clients share one pull, both see it loading, then it is served and saved", async () => {
  const seen: ServeProgress[][] = [[], []];
  await Promise.all(seen.map((progress) => client.serveModel("mnist-8", (p) => progress.push(p))));
  expect(mirror.requests.filter((r) => r.path === "/mnist-8.onnx")).toHaveLength(1);
  // The first asked started the pull; the second joined it (or, arriving after it ended, found mnist-8 served).
  expect(seen[0]?.at(-1)).toMatchObject({ phase: "load", totalBytes: 26_454 });
  for (const progress of seen) if (progress.length) expect(progress.at(-1)?.phase).toBe("load");
  expect(seen.flat().some((p) => p.phase === "download" && p.file === "mnist-8.onnx")).toBe(true);

  expect(node.status()).toMatchObject({ mode: "provider", models: [{ name: "mnist-8", runtime: "onnx" }] });
  expect(node.capability.current()?.models.map((m) => m.name)).toEqual(["mnist-8"]);
  expect(savedServe()).toEqual(["mnist-8"]);
  expect((await client.models()).find((m) => m.name === "mnist-8")).toMatchObject({ cached: true, served: true });

  // Again: already served, nothing fetched or loaded.
  const again: ServeProgress[] = [];
  await client.serveModel("MNIST-8", (p) => again.push(p));
  expect(again).toEqual([]);
  expect(node.serving.map((m) => m.name)).toEqual(["mnist-8"]);
});

test("a client going away mid-download leaves nothing half-served; the next pull resumes the file", async () => {
  Object.assign(mirror.behaviour, {
    stallAt: STALL_AT,
    chunkBytes: SLOW_CHUNK_BYTES,
    chunkDelayMs: SLOW_CHUNK_DELAY_MS,
  });
  const gone = new AbortController();
  const serving = client.serveModel(
    "squeezenet1.1",
    (p) => {
      if (p.phase === "download" && p.doneBytes > 0) gone.abort();
    },
    gone.signal,
  );
  await expect(serving).rejects.toMatchObject({ name: "AbortedError" });
  // The node stops the download (releasing its lock) rather than waiting out the stalled mirror.
  const dest = join(dir.path, "models", "squeezenet1.1", SQUEEZENET);
  while (existsSync(`${dest}.lock`)) await Bun.sleep(20);
  expect(existsSync(`${dest}.partial`)).toBe(true);
  expect(existsSync(dest)).toBe(false);
  expect(node.serving.map((m) => m.name)).toEqual(["mnist-8"]);
  expect(savedServe()).toEqual(["mnist-8"]);
  expect((await client.models()).find((m) => m.name === "squeezenet1.1")).toMatchObject({
    cached: false,
    served: false,
  });

  Object.assign(mirror.behaviour, { stallAt: undefined, chunkDelayMs: 0 });
  const progress: ServeProgress[] = [];
  await client.serveModel("squeezenet1.1", (p) => progress.push(p));
  const fetches = mirror.requests.filter((r) => r.path === `/${SQUEEZENET}`);
  expect(fetches).toHaveLength(2);
  expect(fetches[1]?.start).toBeGreaterThan(0);
  expect(progress.at(-1)?.phase).toBe("load");
  expect(node.serving.map((m) => m.name)).toEqual(["mnist-8", "squeezenet1.1"]);
  expect(savedServe()).toEqual(["mnist-8", "squeezenet1.1"]);
});

test("unserving: the record stops offering the model, then with nothing left the node announces nothing", async () => {
  await client.unserveModel("squeezenet1.1");
  expect(node.serving.map((m) => m.name)).toEqual(["mnist-8"]);
  expect(savedServe()).toEqual(["mnist-8"]);
  await node.capability.announce();
  expect(node.capability.current()?.models.map((m) => m.name)).toEqual(["mnist-8"]);

  await client.unserveModel("mnist-8");
  expect(node.status()).toMatchObject({ mode: "client", models: [] });
  expect(savedServe()).toEqual([]);
  await node.capability.announce();
  expect(node.capability.current()).toBeUndefined();
  await expect(client.unserveModel("mnist-8")).rejects.toMatchObject({ name: "UsageError" });
  expect((await client.models()).every((m) => !m.served)).toBe(true);
});

test("removing a model while it is still being fetched cancels the fetch", async () => {
  Object.assign(mirror.behaviour, {
    stallAt: STALL_AT,
    chunkBytes: SLOW_CHUNK_BYTES,
    chunkDelayMs: SLOW_CHUNK_DELAY_MS,
  });
  let downloading: () => void = () => {};
  const started = new Promise<void>((resolve) => {
    downloading = resolve;
  });
  const serving = client.serveModel("stories260k", (p) => {
    if (p.phase === "download" && p.doneBytes > 0) downloading();
  });
  await started;
  await client.unserveModel("stories260k");
  await expect(serving).rejects.toMatchObject({ name: "AbortedError" });
  expect(node.serving).toEqual([]);
  expect(savedServe()).toEqual([]);
  Object.assign(mirror.behaviour, { stallAt: undefined, chunkDelayMs: 0 });
});
