import { generateKeyPair } from "@libp2p/crypto/keys";
import { flatPrice } from "../../../payments/pricing.ts";
import { createHost, type Host } from "../../host.ts";
import { type CapabilityDescription, type CapabilityService, capabilityService } from "./index.ts";
import type { CapabilityRecord } from "./messages.ts";

/**
 * Real libp2p nodes for capability tests and the discovery benchmark: QUIC on 127.0.0.1, random
 * ports, mDNS off, so every peer is found through the bootstrap's DHT or not at all.
 */

export type CapabilityHost = Host & { services: { capability: CapabilityService } };

export const LOOPBACK_QUIC = "/ip4/127.0.0.1/udp/0/quic-v1";

export interface TestNodeOptions {
  bootstrap?: CapabilityHost;
  describe?: () => CapabilityDescription | undefined;
  announceIntervalMs?: number;
  ttlMs?: number;
  /** Return only once the bootstrap is in the DHT routing table (default true). */
  joined?: boolean;
}

export async function startTestNode(options: TestNodeOptions = {}): Promise<CapabilityHost> {
  const host = await createHost({
    privateKey: await generateKeyPair("Ed25519"),
    listen: [LOOPBACK_QUIC],
    mdns: false,
    ...(options.bootstrap ? { bootstrap: options.bootstrap.getMultiaddrs().map(String) } : {}),
    services: {
      capability: capabilityService({
        ...(options.describe ? { describe: options.describe } : {}),
        ...(options.announceIntervalMs ? { announceIntervalMs: options.announceIntervalMs } : {}),
        ...(options.ttlMs ? { ttlMs: options.ttlMs } : {}),
      }),
    },
  });
  // Bootstrap discovery waits a second before dialling; a test (or a benchmark run) need not.
  if (options.bootstrap) await host.dial(options.bootstrap.getMultiaddrs());
  if (options.bootstrap && (options.joined ?? true))
    await until(() => host.services.dht.routingTable.size > 0, 5000, 10);
  return host as CapabilityHost;
}

/** A provider's live state: tests change `load` and call `announce()`. */
export interface ProviderState {
  /** Empty only for an aggregator. */
  models: Omit<CapabilityRecord["models"][number], "price">[];
  /** Sats per 1,000 units of each model's main unit. */
  price: number;
  load: CapabilityRecord["load"];
  /** Set: the node is an aggregator at this fee. */
  feePercent?: number;
}

export function describeProvider(state: ProviderState): () => CapabilityDescription {
  return () => ({
    software: "0.1.0-test",
    hardware: { gpus: [], cpu: { model: "test cpu", cores: 2 }, ramTotal: 8 * 2 ** 30, tokensPerSecond: 100 },
    models: state.models.map((m) => ({ ...m, price: flatPrice(m.runtime, state.price) })),
    load: { ...state.load },
    reputation: { completed: 0, failed: 0 },
    ...(state.feePercent === undefined ? {} : { aggregator: { feePercent: state.feePercent } }),
  });
}

export async function stopAll(hosts: (Host | undefined)[]): Promise<void> {
  await Promise.allSettled(hosts.map((h) => h?.stop()));
}

/** Polls `check` until it is truthy or `timeoutMs` passes. */
export async function until<T>(
  check: () => T | false | undefined | Promise<T | false | undefined>,
  timeoutMs: number,
  everyMs = 50,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await Bun.sleep(everyMs);
  }
}
