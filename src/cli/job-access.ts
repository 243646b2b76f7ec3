import { multiaddr } from "@multiformats/multiaddr";
import { ControlClient } from "../node/control/client.ts";
import { controlJobOps } from "../node/control/jobs-client.ts";
import { nodeJobOps } from "../node/control/jobs-node.ts";
import type { AggregatorRef, JobOps } from "../node/control/jobs-ops.ts";
import { InfernetNode } from "../node/node.ts";
import { errorMessage, NoProviderError, UsageError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import type { CliContext } from "./command.ts";
import { EPHEMERAL_CONNECT_TIMEOUT_MS, EPHEMERAL_SETTLE_MS, MDNS_CONNECT_TIMEOUT_MS } from "./network.ts";

/**
 * How `submit` and `job` reach aggregators (mirrors `networkAccess`): through the node running on
 * this INFERNET_HOME when there is one (two processes cannot share one identity, and the aggregator
 * knows a job by the peer that submitted it), else through a node of this command's own. Known
 * aggregator addresses (from --aggregator, or recorded with a submitted job) are dialled directly,
 * so no bootstrap peer is needed to reach them.
 */
const log = logger("cli:jobs");

export interface JobAccess extends JobOps, AsyncDisposable {
  via: "daemon" | "ephemeral";
}

export async function jobAccess(ctx: CliContext, known: AggregatorRef[] = []): Promise<JobAccess> {
  const config = ctx.config();
  const control = await ControlClient.connect(config.home);
  if (control) {
    const status = await control.status(ctx.signal);
    return { via: "daemon", ...controlJobOps(control, status.peerId), [Symbol.asyncDispose]: async () => {} };
  }
  const dialable = known.filter((a) => a.addrs.length > 0);
  if (!config.bootstrap.length && !config.mdns && !dialable.length) {
    throw new NoProviderError("not connected to any peer", {
      hint: "start a node (`infernet start`), give --bootstrap <multiaddr>, or --aggregator <multiaddr>",
    });
  }
  const node = await InfernetNode.start({ config, store: ctx.store(), ephemeral: true, signal: ctx.signal });
  try {
    await connect(
      node,
      dialable,
      config.bootstrap.length ? EPHEMERAL_CONNECT_TIMEOUT_MS : MDNS_CONNECT_TIMEOUT_MS,
      ctx.signal,
    );
  } catch (err) {
    await node.stop();
    throw err;
  }
  return { via: "ephemeral", ...nodeJobOps(node), [Symbol.asyncDispose]: () => node.stop() };
}

/** Dials the known aggregators, then gives the DHT a moment; a node with no connection at all is refused. */
async function connect(node: InfernetNode, known: AggregatorRef[], waitMs: number, signal: AbortSignal) {
  const dials = known.flatMap((a) => a.addrs.map((addr) => withPeer(addr, a.peerId)));
  await Promise.all(
    dials.map((addr) =>
      node.host
        .dial(multiaddr(addr), { signal: AbortSignal.any([signal, AbortSignal.timeout(waitMs)]) })
        .catch((err) => {
          log.debug("aggregator address unreachable", { addr, err: errorMessage(err) });
        }),
    ),
  );
  const deadline = Date.now() + waitMs;
  while (node.host.getConnections().length === 0 && Date.now() < deadline && !signal.aborted) await Bun.sleep(20);
  if (node.host.getConnections().length === 0) {
    throw new NoProviderError("could not reach any peer", {
      hint: "check --bootstrap / --aggregator, or start a node with `infernet start`",
    });
  }
  await Bun.sleep(EPHEMERAL_SETTLE_MS);
}

/** An address ending in `/p2p/<peer>`, as a dial needs to authenticate the peer. */
export function withPeer(addr: string, peerId: string): string {
  return addr.includes("/p2p/") ? addr : `${addr}/p2p/${peerId}`;
}

/** `--aggregator`: a peer id, or a multiaddr that ends in `/p2p/<peer id>`. */
export function parseAggregator(text: string): AggregatorRef {
  const trimmed = text.trim();
  if (!trimmed.startsWith("/")) return { peerId: trimmed, addrs: [] };
  let peerId: string | null | undefined;
  try {
    peerId = multiaddr(trimmed)
      .getComponents()
      .findLast((c) => c.name === "p2p")?.value;
  } catch (cause) {
    throw new UsageError(`--aggregator: "${trimmed}" is not a multiaddr`, { cause });
  }
  if (!peerId) {
    throw new UsageError(`--aggregator: "${trimmed}" does not say which peer`, { hint: "end it with /p2p/<peer id>" });
  }
  return { peerId, addrs: [trimmed] };
}
