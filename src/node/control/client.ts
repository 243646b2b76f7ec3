import { existsSync } from "node:fs";
import { join } from "node:path";
import { IdempotencyConflictError, JobNotFoundError } from "../../jobs/errors.ts";
import { ModelNotServedError } from "../../jobs/feasibility.ts";
import type { Msat } from "../../payments/amount.ts";
import type { InferenceRequest } from "../../runtime/engine.ts";
import {
  AbortedError,
  ConfigError,
  DownloadError,
  errorMessage,
  FileNotFoundError,
  type InfernetError,
  IntegrityError,
  InvalidInputError,
  NodeNotRunningError,
  NoProviderError,
  ProvidersBusyError,
  RuntimeError,
  TimeoutError,
  UsageError,
} from "../../util/errors.ts";
import type { NetworkEvent } from "../client.ts";
import type { NodeStatus, PeerRow } from "../node.ts";
import { ndjsonLines } from "./ndjson.ts";
import { CONTROL_SOCKET, type RunBody, type RunStreamLine, requestToWire, tensorFromWire } from "./protocol.ts";
import {
  type CloseAnswer,
  type FundAnswer,
  type PayAnswer,
  WALLET_CALL_TIMEOUT_MS,
  WALLET_CLOSE_PATH,
  WALLET_FUND_PATH,
  WALLET_PAY_PATH,
} from "./wallet-routes.ts";

/** Longest wait for the node to answer a status or peers call. */
export const CONTROL_TIMEOUT_MS = 10_000;
/** Longest wait when only checking whether a node is there. */
export const PROBE_TIMEOUT_MS = 1_000;
/** Longest line of the run stream the client accepts (a tensor batch fits). */
const MAX_LINE_BYTES = 64 * 1024 * 1024;

/** True when a node answers on this socket. */
export async function probeControl(path: string): Promise<boolean> {
  try {
    const res = await fetch("http://infernet/v1/status", { unix: path, signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    return res.ok;
  } catch {
    return false;
  }
}

/** A typed client for a running node's control API. */
export class ControlClient {
  constructor(readonly path: string) {}

  /** The client for the node running with this INFERNET_HOME, or undefined when none is. */
  static async connect(home: string): Promise<ControlClient | undefined> {
    const path = join(home, CONTROL_SOCKET);
    if (!existsSync(path) || !(await probeControl(path))) return undefined;
    return new ControlClient(path);
  }

  /** Like `connect`, but a missing node is an error that says how to start one. */
  static async require(home: string): Promise<ControlClient> {
    const client = await ControlClient.connect(home);
    if (!client) {
      throw new NodeNotRunningError(`no node is running with INFERNET_HOME ${home}`, {
        hint: "start one with `infernet start`",
      });
    }
    return client;
  }

  status(signal?: AbortSignal): Promise<NodeStatus> {
    return this.get("/v1/status", signal);
  }

  peers(signal?: AbortSignal): Promise<PeerRow[]> {
    return this.get("/v1/peers", signal);
  }

  /** Runs a request through the node (its own models, or the network); events stream back. */
  async *run(
    model: { name: string; sha256: string },
    request: InferenceRequest,
    options: { maxPriceMsat?: Msat; deadlineMs?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<NetworkEvent> {
    const body: RunBody = {
      model,
      request: requestToWire(request),
      ...(options.maxPriceMsat !== undefined ? { maxPriceMsat: options.maxPriceMsat.toString() } : {}),
      ...(options.deadlineMs !== undefined ? { deadlineMs: options.deadlineMs } : {}),
    };
    let res: Response;
    try {
      res = await fetch("http://infernet/v1/run", {
        unix: this.path,
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (cause) {
      if (options.signal?.aborted) throw new AbortedError("interrupted");
      throw new NodeNotRunningError(`the node stopped answering: ${errorMessage(cause)}`, { cause });
    }
    if (!res.ok || !res.body) throw await errorFrom(res);
    const oversized = () => new RuntimeError("the node sent an oversized line");
    try {
      for await (const text of ndjsonLines(res.body, MAX_LINE_BYTES, oversized)) {
        const line = JSON.parse(text) as RunStreamLine;
        if (line.type === "heartbeat") continue;
        if (line.type === "error") throw rebuild(line);
        if (line.type === "tensors") {
          yield {
            type: "tensors",
            outputs: Object.fromEntries(Object.entries(line.outputs).map(([k, t]) => [k, tensorFromWire(t)])),
          };
        } else yield line;
        if (line.type === "done") return;
      }
    } catch (err) {
      if (options.signal?.aborted) throw new AbortedError("interrupted");
      throw err;
    }
    throw new RuntimeError("the node closed the stream before the result");
  }

  /** Opens a channel to `peer` (a peer id, or a multiaddr to dial) funded with `sats` from the node's wallet. */
  fundChannel(peer: string, sats: bigint, signal?: AbortSignal): Promise<FundAnswer> {
    return this.post(WALLET_FUND_PATH, { peer, sats: sats.toString() }, WALLET_CALL_TIMEOUT_MS, signal);
  }

  /** Pays `amount` msat to `peer` over the node's channel to it; `memo` says what for (deposit, bond). */
  payChannel(peer: string, amount: bigint, memo: string, signal?: AbortSignal): Promise<PayAnswer> {
    return this.post(WALLET_PAY_PATH, { peer, msat: amount.toString(), memo }, WALLET_CALL_TIMEOUT_MS, signal);
  }

  closeChannel(channel: string, signal?: AbortSignal): Promise<CloseAnswer> {
    return this.post(WALLET_CLOSE_PATH, { channel }, WALLET_CALL_TIMEOUT_MS, signal);
  }

  private async post<T>(path: string, body: unknown, timeoutMs: number, signal?: AbortSignal): Promise<T> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const res = await fetch(`http://infernet${path}`, {
      unix: this.path,
      method: "POST",
      body: JSON.stringify(body),
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    if (!res.ok) throw await errorFrom(res);
    return (await res.json()) as T;
  }

  private async get<T>(path: string, signal?: AbortSignal): Promise<T> {
    const timeout = AbortSignal.timeout(CONTROL_TIMEOUT_MS);
    const res = await fetch(`http://infernet${path}`, {
      unix: this.path,
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    if (!res.ok) throw await errorFrom(res);
    return (await res.json()) as T;
  }
}

const ERRORS: Record<string, new (message: string, options?: { hint?: string }) => InfernetError> = {
  UsageError,
  InvalidInputError,
  NoProviderError,
  ProvidersBusyError,
  TimeoutError,
  AbortedError,
  RuntimeError,
  ConfigError,
  DownloadError,
  FileNotFoundError,
  IntegrityError,
  NodeNotRunningError,
  JobNotFoundError,
  IdempotencyConflictError,
  ModelNotServedError,
  // Refusals whose own classes carry extra figures arrive as their base kind.
  PriceTooLowError: NoProviderError,
  DeadlineTooShortError: TimeoutError,
};

/** The node's typed error, rebuilt on this side so exit codes match a local run. */
export function rebuild(line: { name: string; message: string; hint?: string }): InfernetError {
  const Type = ERRORS[line.name] ?? RuntimeError;
  return new Type(line.message, line.hint ? { hint: line.hint } : {});
}

export async function errorFrom(res: Response): Promise<InfernetError> {
  try {
    const body = (await res.json()) as { name?: string; message?: string; hint?: string };
    return rebuild({
      name: body.name ?? "RuntimeError",
      message: body.message ?? `HTTP ${res.status}`,
      ...(body.hint ? { hint: body.hint } : {}),
    });
  } catch {
    return new RuntimeError(`the node answered HTTP ${res.status}`);
  }
}
