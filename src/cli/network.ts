import type { NetworkEvent } from "../node/client.ts";
import { runOnNetwork } from "../node/client.ts";
import { ControlClient } from "../node/control/client.ts";
import { InfernetNode } from "../node/node.ts";
import type { Engine, InferenceEvent, InferenceRequest, LocalModel, RunOptions } from "../runtime/engine.ts";
import type { CliContext } from "./command.ts";

/** How long a fresh ephemeral node waits for its bootstrap connections before asking the network. */
export const EPHEMERAL_SETTLE_MS = 1_500;
/** Longest wait for the first connection of an ephemeral node. */
export const EPHEMERAL_CONNECT_TIMEOUT_MS = 10_000;

/** The network as this command sees it: the running node's (through its control socket) or its own. */
export interface NetworkAccess extends AsyncDisposable {
  /** "daemon" when a node was running, "ephemeral" when this command started one. */
  via: "daemon" | "ephemeral";
  run(
    model: { name: string; sha256: string },
    request: InferenceRequest,
    options: { maxPrice?: number; signal?: AbortSignal },
  ): AsyncIterable<NetworkEvent>;
  node?: InfernetNode;
  control?: ControlClient;
}

export async function networkAccess(ctx: CliContext): Promise<NetworkAccess> {
  const config = ctx.config();
  const control = await ControlClient.connect(config.home);
  if (control) {
    return {
      via: "daemon",
      control,
      run: (model, request, options) => control.run(model, request, options),
      [Symbol.asyncDispose]: async () => {},
    };
  }
  const node = await InfernetNode.start({ config, store: ctx.store(), ephemeral: true, signal: ctx.signal });
  await settle(node, ctx.signal);
  return {
    via: "ephemeral",
    node,
    run: (model, request, options) => runOnNetwork(node, model, request, options),
    [Symbol.asyncDispose]: () => node.stop(),
  };
}

/** Gives a new node time to connect to its bootstrap peers and fill its routing table. */
async function settle(node: InfernetNode, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + EPHEMERAL_CONNECT_TIMEOUT_MS;
  while (node.host.getConnections().length === 0 && Date.now() < deadline && !signal.aborted) {
    await Bun.sleep(50);
  }
  if (node.host.getConnections().length > 0) await Bun.sleep(EPHEMERAL_SETTLE_MS);
}

/**
 * The network behind the `Engine` interface, so `infernet run` prints a remote run exactly as a local one.
 * `onProvider` hears which peer serves (again after a failover); `outputSeen` tells whether anything
 * reached the user yet (a fallback to local must not repeat output).
 */
export function networkEngine(
  access: NetworkAccess,
  options: { maxPrice?: number; onProvider?: (peerId: string, attempt: number, resumedAt: number) => void },
): Engine & { outputSeen(): boolean } {
  let seen = false;
  return {
    runtime: "llama",
    outputSeen: () => seen,
    async *run(
      model: LocalModel,
      request: InferenceRequest,
      runOptions: RunOptions = {},
    ): AsyncGenerator<InferenceEvent> {
      if (!model.sha256) throw new Error("a network run needs the model's sha256");
      for await (const event of access.run({ name: model.name, sha256: model.sha256 }, request, {
        ...(options.maxPrice !== undefined ? { maxPrice: options.maxPrice } : {}),
        ...(runOptions.signal ? { signal: runOptions.signal } : {}),
      })) {
        if (event.type === "provider") options.onProvider?.(event.peerId, event.attempt, event.resumedAt);
        else {
          if (event.type !== "done") seen = true;
          yield event;
        }
      }
    },
    preload: async () => {},
    dispose: async () => {},
    [Symbol.asyncDispose]: async () => {},
  };
}
