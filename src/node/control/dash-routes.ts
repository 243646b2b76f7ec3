import { errorMessage, UsageError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import type { InfernetNode } from "../node.ts";
import { DASHBOARD_PATH, MAX_SERVING_BODY_BYTES, SERVING_PATH, ServingBodySchema } from "./dash-protocol.ts";
import { DashboardSource } from "./dash-snapshot.ts";
import { errorLine } from "./ndjson.ts";

/**
 * The dashboard's routes on the control server: the snapshot, and pausing or resuming serving.
 * One `DashboardSource` per server, made on the first request (it keeps the CPU sample the next
 * one is measured against, and the cached log tail).
 */
const log = logger("node:control:dash");

export type DashboardRoutes = (req: Request, url: URL) => Promise<Response | undefined>;

export function dashboardRoutes(node: InfernetNode, home: string): DashboardRoutes {
  let source: DashboardSource | undefined;
  return async (req, url) => {
    if (url.pathname === DASHBOARD_PATH && req.method === "GET") {
      source ??= new DashboardSource(node, home);
      return Response.json(await source.snapshot(req.signal));
    }
    if (url.pathname === SERVING_PATH && req.method === "POST") return setServing(node, req);
    return undefined;
  };
}

async function setServing(node: InfernetNode, req: Request): Promise<Response> {
  let accepting: boolean;
  try {
    const text = await req.text();
    if (text.length > MAX_SERVING_BODY_BYTES) throw new Error(`the body is over ${MAX_SERVING_BODY_BYTES} bytes`);
    const parsed = ServingBodySchema.safeParse(JSON.parse(text));
    if (!parsed.success) throw new Error(parsed.error.issues[0]?.message ?? "invalid");
    accepting = parsed.data.accepting;
  } catch (err) {
    return refuse(new UsageError(`bad serving request: ${errorMessage(err)}`));
  }
  if (node.serving.length === 0) {
    return refuse(
      new UsageError("this node serves no model, so there is nothing to pause", {
        hint: "start it with --provider --models ...",
      }),
    );
  }
  if (node.accepting !== accepting) {
    node.accepting = accepting;
    // The record now offers no slots (or its slots again): clients and aggregators rank on it.
    void node.capability.announce();
    log.info(accepting ? "serving resumed" : "serving paused");
  }
  return Response.json({ accepting: node.accepting });
}

function refuse(err: UsageError): Response {
  return Response.json(errorLine(err), { status: 400 });
}
