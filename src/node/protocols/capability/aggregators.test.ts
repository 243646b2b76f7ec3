import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { STORIES_SHA } from "./fixtures.ts";
import { aggregatorCid, modelCid } from "./messages.ts";
import { type CapabilityHost, describeProvider, type ProviderState, startTestNode, stopAll, until } from "./testnet.ts";

/**
 * Aggregator discovery: 1 bootstrap, an aggregator that serves no model, an aggregator that also
 * serves a model, a plain provider, and clients that know only the bootstrap. Real QUIC on
 * 127.0.0.1, mDNS off; announcements every minute, so within a test records come through the DHT.
 */

const STORIES = { name: "stories260k", sha256: STORIES_SHA, runtime: "llama" as const };
const idle = { active: 0, queued: 0, maxConcurrent: 2 };

const hosts: CapabilityHost[] = [];
let bootstrap: CapabilityHost;
/** Serves no model, fee 1.5%. */
let aggregatorOnly: CapabilityHost;
/** Serves stories260k, fee 0.5%. */
let servingAggregator: CapabilityHost;
/** Serves stories260k, no aggregator. */
let provider: CapabilityHost;

async function start(state: ProviderState): Promise<CapabilityHost> {
  const host = await startTestNode({ bootstrap, describe: describeProvider(state), announceIntervalMs: 60_000 });
  hosts.push(host);
  return host;
}

async function dhtProviders(host: CapabilityHost, key = aggregatorCid()): Promise<string[]> {
  const found: string[] = [];
  for await (const peer of host.contentRouting.findProviders(key)) found.push(peer.id.toString());
  return found.sort();
}

beforeAll(async () => {
  bootstrap = await startTestNode();
  hosts.push(bootstrap);
  aggregatorOnly = await start({ models: [], price: 0, load: idle, feePercent: 1.5 });
  servingAggregator = await start({ models: [STORIES], price: 10, load: idle, feePercent: 0.5 });
  provider = await start({ models: [STORIES], price: 5, load: idle });
  // Each puts its DHT records once its routing table holds the bootstrap.
  await until(async () => (await dhtProviders(bootstrap)).length === 2, 10_000);
  await until(async () => (await dhtProviders(bootstrap, modelCid(STORIES_SHA))).length === 2, 10_000);
});

afterAll(() => stopAll(hosts));

describe("aggregator discovery over the DHT", () => {
  test("a fresh node that knows only the bootstrap finds both aggregators, cheapest first", async () => {
    const client = await startTestNode({ bootstrap });
    hosts.push(client);
    expect(client.getConnections().map((c) => c.remotePeer.toString())).toEqual([bootstrap.peerId.toString()]);
    // Nothing came by gossip: whatever the lookup returns, the DHT and the record protocol brought.
    expect(client.services.capability.directory.size).toBe(0);
    const aggregatorIds = [aggregatorOnly, servingAggregator].map((h) => h.peerId.toString()).sort();
    expect(await dhtProviders(client)).toEqual(aggregatorIds);

    const found = await client.services.capability.findAggregators();
    expect(found.map((r) => r.peerId)).toEqual([servingAggregator.peerId.toString(), aggregatorOnly.peerId.toString()]);
    expect(found.map((r) => r.aggregator?.feePercent)).toEqual([0.5, 1.5]);
    for (const r of found) {
      expect(r.expiresAt).toBeGreaterThan(Date.now());
      expect(r.addrs.length).toBeGreaterThan(0);
    }
    expect(found[1]?.models).toEqual([]);
    expect(found.map((r) => r.peerId)).not.toContain(provider.peerId.toString());
  });

  test("an aggregator that serves no model is never a provider; one that serves a model is", async () => {
    const client = await startTestNode({ bootstrap });
    hosts.push(client);
    // Both aggregators' records are in the directory now, so the filter, not the DHT, decides.
    await client.services.capability.findAggregators();
    expect(client.services.capability.directory.get(aggregatorOnly.peerId.toString())).toBeDefined();
    const providers = await client.services.capability.findProviders(STORIES_SHA);
    expect(providers.map((r) => r.peerId).sort()).toEqual(
      [servingAggregator.peerId.toString(), provider.peerId.toString()].sort(),
    );
  });

  test("an aggregator does not find itself; a provider-only node finds both", async () => {
    const fromAggregator = await aggregatorOnly.services.capability.findAggregators();
    expect(fromAggregator.map((r) => r.peerId)).toEqual([servingAggregator.peerId.toString()]);
    const fromProvider = await provider.services.capability.findAggregators();
    expect(fromProvider.map((r) => r.peerId)).toEqual([
      servingAggregator.peerId.toString(),
      aggregatorOnly.peerId.toString(),
    ]);
  });

  test("a cancelled lookup throws AbortedError", async () => {
    const client = await startTestNode({ bootstrap });
    hosts.push(client);
    const controller = new AbortController();
    controller.abort();
    await expect(client.services.capability.findAggregators({ signal: controller.signal })).rejects.toHaveProperty(
      "name",
      "AbortedError",
    );
  });
});
