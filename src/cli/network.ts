import type { NetworkEvent } from "../node/client.ts";
import { runOnNetwork } from "../node/client.ts";
import { ControlClient } from "../node/control/client.ts";
import { InfernetNode } from "../node/node.ts";
import { type Msat, msat } from "../payments/amount.ts";
import { paymentsSetup } from "../payments/setup.ts";
import type {
  Engine,
  InferenceEvent,
  InferenceRequest,
  LocalModel,
  RunOptions,
  RuntimeName,
} from "../runtime/engine.ts";
import type { CliContext } from "./command.ts";

/** How long a fresh ephemeral node lets its routing table fill after its first connection. */
export const EPHEMERAL_SETTLE_MS = 500;
/** Longest wait for the first connection when bootstrap peers are configured. */
export const EPHEMERAL_CONNECT_TIMEOUT_MS = 10_000;
/** Longest wait for a LAN peer (mDNS) when no bootstrap peer is configured. */
export const MDNS_CONNECT_TIMEOUT_MS = 1_000;

/** The network as this command sees it: the running node's (through its control socket) or its own. */
export interface NetworkAccess extends AsyncDisposable {
  /** "daemon" when a node was running, "ephemeral" when this command started one. */
  via: "daemon" | "ephemeral";
  run(
    model: { name: string; sha256: string },
    request: InferenceRequest,
    options: { maxPriceMsat?: Msat; signal?: AbortSignal },
  ): AsyncIterable<NetworkEvent>;
  node?: InfernetNode;
  control?: ControlClient;
}

/**
 * The running node, or an ephemeral one connected to at least one peer; undefined when this machine
 * has no way onto a network (no node running, no bootstrap peer, no LAN peer answering mDNS), so the
 * caller can work locally at once instead of waiting for discovery that cannot succeed.
 */
export async function networkAccess(
  ctx: CliContext,
  options: { payments?: boolean } = {},
): Promise<NetworkAccess | undefined> {
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
  if (!config.bootstrap.length && !config.mdns) return undefined;
  // A node of this command's own pays over this home's channels with its wallet's keys when asked to.
  const payments = options.payments ? paymentsSetup(config) : undefined;
  const node = await InfernetNode.start({
    config,
    store: ctx.store(),
    ephemeral: true,
    signal: ctx.signal,
    ...(payments
      ? { payments: { wallet: () => payments.wallet(), chain: payments.chain, network: payments.network } }
      : {}),
  });
  const wait = config.bootstrap.length ? EPHEMERAL_CONNECT_TIMEOUT_MS : MDNS_CONNECT_TIMEOUT_MS;
  if (!(await settle(node, wait, ctx.signal))) {
    await node.stop();
    return undefined;
  }
  return {
    via: "ephemeral",
    node,
    run: (model, request, options) => runOnNetwork(node, model, request, options),
    [Symbol.asyncDispose]: () => node.stop(),
  };
}

/** Gives a new node time to connect and fill its routing table; false when it found no peer at all. */
async function settle(node: InfernetNode, connectTimeoutMs: number, signal: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + connectTimeoutMs;
  while (node.host.getConnections().length === 0 && Date.now() < deadline && !signal.aborted) {
    await Bun.sleep(20);
  }
  if (node.host.getConnections().length === 0) return false;
  await Bun.sleep(EPHEMERAL_SETTLE_MS);
  return true;
}

/**
 * The network behind the `Engine` interface, so `infernet run` prints a remote run exactly as a local one.
 * `onProvider` hears which peer serves (again after a failover); `outputSeen` tells whether anything
 * reached the user yet (a fallback to local must not repeat output).
 */
export function networkEngine(
  access: NetworkAccess,
  runtime: RuntimeName,
  options: {
    maxPriceMsat?: Msat;
    onProvider?: (peerId: string, attempt: number, resumedAt: number) => void;
    /** Told what a provider was paid for the request over this node's channel to it. */
    onPaid?: (peerId: string, paidMsat: Msat) => void;
  },
): Engine & { outputSeen(): boolean } {
  let seen = false;
  return {
    runtime,
    outputSeen: () => seen,
    async *run(
      model: LocalModel,
      request: InferenceRequest,
      runOptions: RunOptions = {},
    ): AsyncGenerator<InferenceEvent> {
      if (!model.sha256) throw new Error("a network run needs the model's sha256");
      for await (const event of access.run({ name: model.name, sha256: model.sha256 }, request, {
        ...(options.maxPriceMsat !== undefined ? { maxPriceMsat: options.maxPriceMsat } : {}),
        ...(runOptions.signal ? { signal: runOptions.signal } : {}),
      })) {
        if (event.type === "provider") options.onProvider?.(event.peerId, event.attempt, event.resumedAt);
        else if (event.type === "paid") options.onPaid?.(event.peerId, msat(event.paidMsat));
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
