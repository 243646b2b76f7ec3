import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
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
