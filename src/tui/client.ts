import { existsSync } from "node:fs";
import { join } from "node:path";
import { CONTROL_TIMEOUT_MS, errorFrom, probeControl } from "../node/control/client.ts";
import {
  DASHBOARD_PATH,
  DashboardSnapshotSchema,
  MAX_SNAPSHOT_BYTES,
  SERVING_PATH,
  type ServingBody,
} from "../node/control/dash-protocol.ts";
import { CONTROL_SOCKET } from "../node/control/protocol.ts";
import { AbortedError, errorMessage, NodeNotRunningError, RuntimeError } from "../util/errors.ts";
import type { DashboardSnapshot } from "./state.ts";

/**
 * The dashboard's only way to the node: its control socket (the same one the CLI uses), so the node
 * runs the same with or without a dashboard attached, and `infernet dash` can attach to a daemon.
 * Every failure is a typed error: `NodeNotRunningError` when no node answers (the screen says how to
 * start one), `AbortedError` when the caller stopped, the node's own error otherwise.
 */
export class DashboardClient {
  private constructor(readonly path: string) {}

  /** The client for the node running with this INFERNET_HOME; `NodeNotRunningError` when there is none. */
  static async connect(home: string): Promise<DashboardClient> {
    const path = join(home, CONTROL_SOCKET);
    if (!existsSync(path) || !(await probeControl(path))) {
      throw new NodeNotRunningError(`no node is running with INFERNET_HOME ${home}`, {
        hint: "start one with `infernet start`",
      });
    }
    return new DashboardClient(path);
  }

  /** One snapshot of the node, checked against the schema (a node of another version fails clearly). */
  async snapshot(signal?: AbortSignal): Promise<DashboardSnapshot> {
    const res = await this.call(DASHBOARD_PATH, { method: "GET" }, signal);
    const body = await this.readBody(res, signal);
    const parsed = DashboardSnapshotSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new RuntimeError(
        `the node sent a snapshot this dashboard cannot read (${issue?.path.join(".")}: ${issue?.message})`,
        {
          hint: "run the same version of infernet for the node and the dashboard",
        },
      );
    }
    // JSON has no undefined: optional fields arrive absent, which the panels read the same way.
    return parsed.data as DashboardSnapshot;
  }

  /** Pauses (false) or resumes (true) serving; resolves with the state the node is in now. */
  async setServing(accepting: boolean, signal?: AbortSignal): Promise<boolean> {
    const body: ServingBody = { accepting };
    const res = await this.call(
      SERVING_PATH,
      { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) },
      signal,
    );
    const answer = (await this.readBody(res, signal)) as { accepting?: unknown };
    if (typeof answer.accepting !== "boolean") throw new RuntimeError("the node's answer to pause/resume has no state");
    return answer.accepting;
  }

  private async call(path: string, init: RequestInit, signal?: AbortSignal): Promise<Response> {
    const timeout = AbortSignal.timeout(CONTROL_TIMEOUT_MS);
    let res: Response;
    try {
      res = await fetch(`http://infernet${path}`, {
        ...init,
        unix: this.path,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (cause) {
      if (signal?.aborted) throw new AbortedError("interrupted");
      throw new NodeNotRunningError(`the node stopped answering: ${errorMessage(cause)}`, {
        hint: "start it again with `infernet start`",
        cause,
      });
    }
    if (!res.ok) throw await errorFrom(res);
    return res;
  }

  /** The JSON body, refusing one over `MAX_SNAPSHOT_BYTES` before parsing it. */
  private async readBody(res: Response, signal?: AbortSignal): Promise<unknown> {
    const declared = Number(res.headers.get("content-length") ?? "0");
    if (declared > MAX_SNAPSHOT_BYTES) {
      await res.body?.cancel();
      throw new RuntimeError(`the node's answer is over ${MAX_SNAPSHOT_BYTES} bytes`);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (cause) {
      if (signal?.aborted) throw new AbortedError("interrupted");
      throw new NodeNotRunningError(`the node stopped answering: ${errorMessage(cause)}`, { cause });
    }
    if (text.length > MAX_SNAPSHOT_BYTES)
      throw new RuntimeError(`the node's answer is over ${MAX_SNAPSHOT_BYTES} bytes`);
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new RuntimeError("the node's answer is not JSON");
    }
  }
}
