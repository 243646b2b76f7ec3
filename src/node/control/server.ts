import { chmodSync, existsSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { msat } from "../../payments/amount.ts";
import type { InferenceRequest } from "../../runtime/engine.ts";
import { ConfigError, errorMessage } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import { runOnNetwork } from "../client.ts";
import type { InfernetNode } from "../node.ts";
import { probeControl } from "./client.ts";
import { type DashboardRoutes, dashboardRoutes } from "./dash-routes.ts";
import { MAX_JOB_UPLOAD_BYTES } from "./jobs-protocol.ts";
import { routeJobs } from "./jobs-routes.ts";
import { withModelsRoutes } from "./models-routes.ts";
import { ndjsonResponse } from "./ndjson.ts";
import {
  CONTROL_SOCKET,
  MAX_CONTROL_BODY_BYTES,
  MAX_SOCKET_PATH,
  type RunBody,
  RunBodySchema,
  type RunStreamLine,
  requestFromWire,
  tensorToWire,
} from "./protocol.ts";
import { routeWallet } from "./wallet-routes.ts";

/**
 * The node's local control API: HTTP on a Unix socket inside INFERNET_HOME (directory 0700, socket
 * 0600), so only this user can drive the node. `infernet run/peers/status` and the dashboard use it
 * to reuse a running node's connections instead of starting their own.
 */
const log = logger("node:control");

export interface ControlServer extends AsyncDisposable {
  readonly path: string;
  stop(): Promise<void>;
}

export async function startControlServer(node: InfernetNode, home: string): Promise<ControlServer> {
  const path = join(home, CONTROL_SOCKET);
  if (path.length > MAX_SOCKET_PATH) {
    throw new ConfigError(`the control socket path ${path} is too long for a Unix socket`, {
      hint: "use a shorter INFERNET_HOME",
    });
  }
  if (existsSync(path)) {
    if (await probeControl(path)) {
      throw new ConfigError(`a node is already running with INFERNET_HOME ${home}`, {
        hint: "stop it first, or use another INFERNET_HOME",
      });
    }
    unlinkSync(path); // left behind by a node that did not exit cleanly
  }
  const dash = withModelsRoutes(dashboardRoutes(node, home), node, home);
  const server = Bun.serve({
    unix: path,
    // A job upload streams its shards in one body; /v1/run checks its own, smaller limit.
    maxRequestBodySize: Math.max(MAX_CONTROL_BODY_BYTES, MAX_JOB_UPLOAD_BYTES),
    fetch: (req) => route(node, home, dash, req),
    error: (err) => json({ type: "error", name: "InternalError", message: errorMessage(err) }, 500),
  });
  chmodSync(path, 0o600);
  log.info("control API listening", { path });
  const stop = async () => {
    await server.stop(true);
    if (existsSync(path)) unlinkSync(path);
  };
  return { path, stop, [Symbol.asyncDispose]: stop };
}

async function route(node: InfernetNode, home: string, dash: DashboardRoutes, req: Request): Promise<Response> {
  const url = new URL(req.url);
  if (req.method === "GET" && url.pathname === "/v1/status") return json(node.status());
  if (req.method === "GET" && url.pathname === "/v1/peers") return json(await node.peers(req.signal));
  if (req.method === "POST" && url.pathname === "/v1/run") return run(node, req);
  const dashboard = await dash(req, url);
  if (dashboard) return dashboard;
  const jobs = await routeJobs(node, home, req, url);
  if (jobs) return jobs;
  const wallet = await routeWallet(node, req, url);
  if (wallet) return wallet;
  return json({ type: "error", name: "NotFound", message: `no such endpoint: ${req.method} ${url.pathname}` }, 404);
}

async function run(node: InfernetNode, req: Request): Promise<Response> {
  let body: RunBody;
  try {
    const text = await req.text();
    if (text.length > MAX_CONTROL_BODY_BYTES) throw new Error(`the body is over ${MAX_CONTROL_BODY_BYTES} bytes`);
    const parsed = RunBodySchema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(parsed.error.issues[0]?.message ?? "invalid");
    body = parsed.data;
  } catch (err) {
    return json({ type: "error", name: "UsageError", message: `bad run request: ${errorMessage(err)}` }, 400);
  }
  const request: InferenceRequest = requestFromWire(body.request);
  const events = node.serves(body.model.sha256)
    ? node.runServed(body.model.sha256, request, req.signal)
    : runOnNetwork(node, body.model, request, {
        signal: req.signal,
        ...(body.maxPriceMsat !== undefined ? { maxPriceMsat: msat(body.maxPriceMsat, "maxPriceMsat") } : {}),
        ...(body.deadlineMs !== undefined ? { deadlineMs: body.deadlineMs } : {}),
      });
  return ndjsonResponse<RunStreamLine>(req.signal, async (send) => {
    for await (const event of events) {
      if (event.type === "tensors") {
        const outputs = Object.fromEntries(Object.entries(event.outputs).map(([k, t]) => [k, tensorToWire(t)]));
        send({ type: "tensors", outputs });
      } else send(event);
    }
  });
}

function json(value: unknown, status = 200): Response {
  return Response.json(value, { status });
}
