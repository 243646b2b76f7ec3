import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { MAX_MODELS_ANSWER_BYTES } from "../node/control/models-protocol.ts";
import { CONTROL_SOCKET } from "../node/control/protocol.ts";
import { DashboardClient } from "./client.ts";

// What the dashboard's client does when the node is missing or answers something it cannot read.
// Snapshots from real nodes are tested in src/node/control/dash-network.test.ts.

test("no node on this home: NodeNotRunningError that says how to start one", async () => {
  using dir = tempDir();
  await expect(DashboardClient.connect(dir.path)).rejects.toMatchObject({
    name: "NodeNotRunningError",
    hint: "start one with `infernet start`",
  });
  // A socket file left behind by a node that did not exit cleanly is no node either.
  writeFileSync(join(dir.path, CONTROL_SOCKET), "");
  await expect(DashboardClient.connect(dir.path)).rejects.toMatchObject({ name: "NodeNotRunningError" });
});

/** A control socket that answers status, and `dashboard` for the snapshot route. */
function serve(home: string, dashboard: () => Response) {
  return Bun.serve({
    unix: join(home, CONTROL_SOCKET),
    fetch: (req) => (new URL(req.url).pathname === "/v1/status" ? Response.json({}) : dashboard()),
  });
}

test("a snapshot of another shape is a RuntimeError naming the field, not a garbled screen", async () => {
  using dir = tempDir();
  const server = serve(dir.path, () => Response.json({ node: { peerId: 7 } }));
  try {
    const client = await DashboardClient.connect(dir.path);
    const err = await client.snapshot().catch((e: unknown) => e);
    expect(err).toMatchObject({ name: "RuntimeError" });
    expect((err as Error).message).toContain("node.peerId");
  } finally {
    await server.stop(true);
  }
});

test("the node's own error comes back typed; a node gone mid-session is NodeNotRunningError", async () => {
  using dir = tempDir();
  const server = serve(dir.path, () =>
    Response.json({ type: "error", name: "UsageError", message: "nothing to pause" }, { status: 400 }),
  );
  const client = await DashboardClient.connect(dir.path);
  await expect(client.setServing(false)).rejects.toMatchObject({ name: "UsageError", message: "nothing to pause" });
  await server.stop(true);
  await expect(client.snapshot()).rejects.toMatchObject({ name: "NodeNotRunningError" });
});

test("an aborted call is AbortedError", async () => {
  using dir = tempDir();
  const server = serve(dir.path, () => new Response(new ReadableStream({ start() {} })));
  try {
    const client = await DashboardClient.connect(dir.path);
    const stop = new AbortController();
    const pending = client.snapshot(stop.signal);
    stop.abort();
    await expect(pending).rejects.toMatchObject({ name: "AbortedError" });
  } finally {
    await server.stop(true);
  }
});

/** A serve stream made of these lines, as the node sends it. */
function streamOf(lines: string[]): Response {
  return new Response(lines.map((l) => `${l}\n`).join(""), { headers: { "content-type": "application/x-ndjson" } });
}

test("serving: progress lines reach onProgress, the served line ends it; an error line is the node's typed error", async () => {
  using dir = tempDir();
  let answer = streamOf([
    JSON.stringify({
      type: "progress",
      phase: "download",
      file: "mnist-8.onnx",
      doneBytes: 10,
      totalBytes: 20,
      bytesPerSecond: 5,
    }),
    JSON.stringify({ type: "heartbeat" }),
    JSON.stringify({ type: "progress", phase: "load", doneBytes: 0, totalBytes: 20, bytesPerSecond: 0 }),
    JSON.stringify({ type: "served", models: ["mnist-8"] }),
  ]);
  const server = serve(dir.path, () => answer);
  try {
    const client = await DashboardClient.connect(dir.path);
    const seen: unknown[] = [];
    await client.serveModel("mnist-8", (p) => seen.push(p));
    expect(seen).toEqual([
      { phase: "download", file: "mnist-8.onnx", doneBytes: 10, totalBytes: 20, bytesPerSecond: 5 },
      { phase: "load", doneBytes: 0, totalBytes: 20, bytesPerSecond: 0 },
    ]);

    answer = streamOf([JSON.stringify({ type: "error", name: "DownloadError", message: "no source", hint: "retry" })]);
    await expect(client.serveModel("mnist-8", () => {})).rejects.toMatchObject({
      name: "DownloadError",
      message: "no source",
      hint: "retry",
    });
    answer = Response.json({ type: "error", name: "UnknownModelError", message: 'unknown model "x"' }, { status: 400 });
    await expect(client.serveModel("x", () => {})).rejects.toMatchObject({ name: "UnknownModelError" });
  } finally {
    await server.stop(true);
  }
});

test("serving: a stream that ends early, a line of another shape or an oversized line fail clearly", async () => {
  using dir = tempDir();
  let answer = streamOf([
    JSON.stringify({ type: "progress", phase: "load", doneBytes: 0, totalBytes: 1, bytesPerSecond: 0 }),
  ]);
  const server = serve(dir.path, () => answer);
  try {
    const client = await DashboardClient.connect(dir.path);
    await expect(client.serveModel("mnist-8", () => {})).rejects.toMatchObject({ name: "NodeNotRunningError" });
    answer = streamOf([JSON.stringify({ type: "progress", phase: "teleport", doneBytes: 0, totalBytes: 1 })]);
    const err = await client.serveModel("mnist-8", () => {}).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: "RuntimeError" });
    expect((err as Error).message).toContain("phase");
    answer = streamOf(["x".repeat(MAX_MODELS_ANSWER_BYTES + 1)]);
    await expect(client.serveModel("mnist-8", () => {})).rejects.toMatchObject({ name: "RuntimeError" });
    answer = Response.json([{ name: "mnist-8", runtime: "tpu" }]);
    await expect(client.models()).rejects.toMatchObject({ name: "RuntimeError" });
    answer = Response.json({ models: "mnist-8" });
    await expect(client.unserveModel("mnist-8")).rejects.toMatchObject({ name: "RuntimeError" });
  } finally {
    await server.stop(true);
  }
});
