import { existsSync } from "node:fs";
import { join } from "node:path";
import type { z } from "zod";
import { CONTROL_TIMEOUT_MS, probeControl, rebuild } from "../node/control/client.ts";
import {
  DASHBOARD_PATH,
  DashboardSnapshotSchema,
  MAX_SNAPSHOT_BYTES,
  SERVING_PATH,
  type ServingBody,
} from "../node/control/dash-protocol.ts";
import {
  MAX_MODELS_ANSWER_BYTES,
  MODELS_PATH,
  type ModelBody,
  ModelChoicesSchema,
  SERVE_MODEL_PATH,
  ServeLineSchema,
  UNSERVE_MODEL_PATH,
  UnserveAnswerSchema,
} from "../node/control/models-protocol.ts";
import { ndjsonLines } from "../node/control/ndjson.ts";
import { CONTROL_SOCKET } from "../node/control/protocol.ts";
import {
  AbortedError,
  errorMessage,
  type InfernetError,
  NodeNotRunningError,
  RuntimeError,
  UnknownModelError,
} from "../util/errors.ts";
import type { DashboardSnapshot, ModelChoice, ServeProgress } from "./state.ts";

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

  /** Every catalog model, whether it is downloaded already and whether the node serves it. */
  async models(signal?: AbortSignal): Promise<ModelChoice[]> {
    const res = await this.call(MODELS_PATH, { method: "GET" }, signal);
    return checked(ModelChoicesSchema, await this.readBody(res, signal, MAX_MODELS_ANSWER_BYTES), "model list");
  }

  /**
   * Adds a catalog model to what the node serves: `onProgress` follows its download and loading,
   * and the promise resolves once the node serves it (at once when it already does). Rejects with
   * the node's typed error (an unknown name is an `UnknownModelError`), or `AbortedError` when
   * `signal` aborts, which stops the download on the node (it resumes next time) unless another
   * client asked for the same model.
   */
  async serveModel(name: string, onProgress: (p: ServeProgress) => void, signal?: AbortSignal): Promise<void> {
    // No overall deadline: a large model takes as long as it takes; the node sends heartbeats meanwhile.
    const res = await this.call(SERVE_MODEL_PATH, post({ name }), signal, false);
    if (!res.body) throw new RuntimeError("the node's answer to serve has no body");
    const oversized = () => new RuntimeError(`the node sent a line over ${MAX_MODELS_ANSWER_BYTES} bytes`);
    try {
      for await (const text of ndjsonLines(res.body, MAX_MODELS_ANSWER_BYTES, oversized)) {
        const line = checked(ServeLineSchema, parseJson(text), "serve progress");
        if (line.type === "served") return;
        if (line.type === "error") throw nodeError(line);
        if (line.type === "progress") {
          const { type: _type, ...progress } = line;
          onProgress(progress);
        }
      }
    } catch (err) {
      if (signal?.aborted) throw new AbortedError("interrupted");
      if (err instanceof Error && err.name === "TypeError") {
        throw new NodeNotRunningError(`the node stopped answering: ${errorMessage(err)}`, { cause: err });
      }
      throw err;
    }
    throw new NodeNotRunningError("the node closed the stream before the model was served");
  }

  /** Stops serving a model (running requests finish); a `UsageError` when the node does not serve it. */
  async unserveModel(name: string, signal?: AbortSignal): Promise<void> {
    const res = await this.call(UNSERVE_MODEL_PATH, post({ name }), signal);
    checked(UnserveAnswerSchema, await this.readBody(res, signal, MAX_MODELS_ANSWER_BYTES), "unserve answer");
  }

  private async call(path: string, init: RequestInit, signal?: AbortSignal, deadline = true): Promise<Response> {
    const timeout = deadline ? AbortSignal.timeout(CONTROL_TIMEOUT_MS) : undefined;
    const signals = [signal, timeout].filter((s) => s !== undefined);
    let res: Response;
    try {
      res = await fetch(`http://infernet${path}`, {
        ...init,
        unix: this.path,
        ...(signals.length ? { signal: AbortSignal.any(signals) } : {}),
      });
    } catch (cause) {
      if (signal?.aborted) throw new AbortedError("interrupted");
      throw new NodeNotRunningError(`the node stopped answering: ${errorMessage(cause)}`, {
        hint: "start it again with `infernet start`",
        cause,
      });
    }
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  /** The JSON body, refusing one over `maxBytes` before parsing it. */
  private async readBody(res: Response, signal?: AbortSignal, maxBytes = MAX_SNAPSHOT_BYTES): Promise<unknown> {
    const declared = Number(res.headers.get("content-length") ?? "0");
    if (declared > maxBytes) {
      await res.body?.cancel();
      throw new RuntimeError(`the node's answer is over ${maxBytes} bytes`);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (cause) {
      if (signal?.aborted) throw new AbortedError("interrupted");
      throw new NodeNotRunningError(`the node stopped answering: ${errorMessage(cause)}`, { cause });
    }
    if (text.length > maxBytes) throw new RuntimeError(`the node's answer is over ${maxBytes} bytes`);
    return parseJson(text);
  }
}

function post(body: ModelBody): RequestInit {
  return { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new RuntimeError("the node's answer is not JSON");
  }
}

/** `value` checked against `schema`; a node of another version fails clearly, naming what it sent. */
function checked<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new RuntimeError(
    `the node sent a ${what} this dashboard cannot read (${issue?.path.join(".")}: ${issue?.message})`,
    {
      hint: "run the same version of infernet for the node and the dashboard",
    },
  );
}

/** The node's error, typed as it was there (the control client's kinds, plus an unknown model name). */
function nodeError(line: { name: string; message: string; hint?: string }): InfernetError {
  if (line.name === "UnknownModelError")
    return new UnknownModelError(line.message, line.hint ? { hint: line.hint } : {});
  return rebuild(line);
}

async function errorOf(res: Response): Promise<InfernetError> {
  try {
    const body = (await res.json()) as { name?: unknown; message?: unknown; hint?: unknown };
    return nodeError({
      name: typeof body.name === "string" ? body.name : "RuntimeError",
      message: typeof body.message === "string" ? body.message : `HTTP ${res.status}`,
      ...(typeof body.hint === "string" ? { hint: body.hint } : {}),
    });
  } catch {
    return new RuntimeError(`the node answered HTTP ${res.status}`);
  }
}
