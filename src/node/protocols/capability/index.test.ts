import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { DirectoryChange } from "../../directory.ts";
import { MNIST_SHA, STORIES_SHA } from "./fixtures.ts";
import { MIN_ANNOUNCE_GAP_MS } from "./index.ts";
import { modelCid, NOT_A_PROVIDER } from "./messages.ts";
import { fetchRecord } from "./protocol.ts";
import { type CapabilityHost, describeProvider, type ProviderState, startTestNode, stopAll, until } from "./testnet.ts";

/** 1 bootstrap + 3 providers + clients that know only the bootstrap; real QUIC on 127.0.0.1, mDNS off. */

const hosts: CapabilityHost[] = [];
let bootstrap: CapabilityHost;
const providers: CapabilityHost[] = [];
const states: ProviderState[] = [];

beforeAll(async () => {
  bootstrap = await startTestNode();
  hosts.push(bootstrap);
  for (let i = 0; i < 3; i++) {
    const state: ProviderState = {
      models: [
        { name: "stories260k", sha256: STORIES_SHA, runtime: "llama" },
        ...(i === 0 ? [{ name: "mnist-8", sha256: MNIST_SHA, runtime: "onnx" as const }] : []),
      ],
      price: 10 + i,
      load: { active: 0, queued: 0, maxConcurrent: 2 },
    };
    states.push(state);
    const p = await startTestNode({ bootstrap, describe: describeProvider(state), announceIntervalMs: 60_000 });
    providers.push(p);
    hosts.push(p);
  }
  // Providers put their DHT records once their routing tables hold the bootstrap.
  await until(async () => {
    const found = [];
    for await (const peer of bootstrap.contentRouting.findProviders(modelCid(STORIES_SHA))) found.push(peer);
    return found.length === 3;
  }, 10_000);
});

afterAll(() => stopAll(hosts));

describe("capability discovery over the DHT", () => {
  test("a client that knows only the bootstrap finds all 3 providers with valid records", async () => {
    const client = await startTestNode({ bootstrap });
    hosts.push(client);
    expect(client.getConnections().map((c) => c.remotePeer.toString())).toEqual([bootstrap.peerId.toString()]);

    const viaDht = new Set<string>();
    for await (const peer of client.contentRouting.findProviders(modelCid(STORIES_SHA))) viaDht.add(peer.id.toString());
    const providerIds = providers.map((p) => p.peerId.toString()).sort();
    expect([...viaDht].sort()).toEqual(providerIds);

    const started = performance.now();
    const records = await client.services.capability.findProviders(STORIES_SHA);
    const ms = performance.now() - started;
    expect(records.map((r) => r.peerId).sort()).toEqual(providerIds);
    for (const r of records) {
      expect(r.models.some((m) => m.sha256 === STORIES_SHA)).toBe(true);
      expect(r.expiresAt).toBeGreaterThan(Date.now());
      expect(r.addrs.length).toBeGreaterThan(0);
    }
    expect(records.find((r) => r.peerId === providerIds[0])).toBeDefined();
    console.log(`findProviders: ${records.length} providers in ${ms.toFixed(0)} ms`);

    const mnist = await client.services.capability.findProviders(MNIST_SHA);
    expect(mnist.map((r) => r.peerId)).toEqual([String(providers[0]?.peerId)]);
    expect(await client.services.capability.findProviders("c".repeat(64), { timeoutMs: 3000 })).toEqual([]);
  });

  test("two nodes behind the same bootstrap, mDNS off, find each other", async () => {
    const a = await startTestNode({ bootstrap });
    const b = await startTestNode({ bootstrap });
    hosts.push(a, b);
    expect(a.getConnections(b.peerId)).toHaveLength(0);
    const found = await a.peerRouting.findPeer(b.peerId, { signal: AbortSignal.timeout(5000) });
    expect(found.multiaddrs.length).toBeGreaterThan(0);
    // Only the addresses the DHT gave: libp2p's ping is avoided here because its connection monitor
    // pings too, and ping allows one outbound stream per connection.
    const connection = await a.dial(found.multiaddrs, { signal: AbortSignal.timeout(5000) });
    expect(connection.remotePeer.equals(b.peerId)).toBe(true);
  });

  test("a live load change reaches a client through gossip", async () => {
    const client = await startTestNode({ bootstrap });
    hosts.push(client);
    await client.services.capability.findProviders(STORIES_SHA);
    const provider = providers[1] as CapabilityHost;
    const id = provider.peerId.toString();
    const before = client.services.capability.directory.get(id);
    expect(before?.load.queued).toBe(0);

    (states[1] as ProviderState).load = { active: 2, queued: 7, maxConcurrent: 2 };
    let upserts = 0;
    const count = (e: CustomEvent<DirectoryChange>) => {
      if (e.detail.type === "upsert" && e.detail.peerId === id) upserts++;
    };
    client.services.capability.directory.addEventListener("change", count);
    // A burst of announcements is coalesced: one now, at most one more after MIN_ANNOUNCE_GAP_MS.
    await Promise.all(Array.from({ length: 5 }, () => provider.services.capability.announce()));
    const updated = await until(() => {
      const r = client.services.capability.directory.get(id);
      return r?.load.queued === 7 ? r : false;
    }, 5000);
    expect(updated.seq).toBeGreaterThan(before?.seq ?? 0);
    await Bun.sleep(MIN_ANNOUNCE_GAP_MS * 2);
    client.services.capability.directory.removeEventListener("change", count);
    expect(upserts).toBeGreaterThanOrEqual(1);
    expect(upserts).toBeLessThanOrEqual(2);
    // Later announcements go out too (a coalesced burst leaves nothing stuck).
    const last = client.services.capability.directory.get(id)?.seq ?? 0;
    await provider.services.capability.announce();
    await until(() => (client.services.capability.directory.get(id)?.seq ?? 0) > last, 5000);
    expect(updated.load.active).toBe(2);
    // Relays verified and kept it too.
    expect(bootstrap.services.capability.directory.get(id)?.load.queued).toBe(7);
  });

  test("records expire in the directory when their provider stops refreshing them", async () => {
    const state: ProviderState = { ...(states[0] as ProviderState), price: 99 };
    const shortLived = await startTestNode({ bootstrap, describe: describeProvider(state), ttlMs: 1500 });
    hosts.push(shortLived);
    const client = await startTestNode({ bootstrap });
    hosts.push(client);
    const id = shortLived.peerId.toString();
    const found = await until(async () => {
      const records = await client.services.capability.findProviders(STORIES_SHA);
      return records.find((r) => r.peerId === id);
    }, 5000);
    expect(found.expiresAt - found.issuedAt).toBe(1500);
    await shortLived.stop();
    await Bun.sleep(Math.max(0, found.expiresAt - Date.now() + 50));
    expect(client.services.capability.directory.get(id)).toBeUndefined();
    expect(client.services.capability.directory.all().map((r) => r.peerId)).not.toContain(id);
  });

  test("a node that serves nothing answers record requests with not-a-provider", async () => {
    const client = await startTestNode({ bootstrap });
    hosts.push(client);
    const dialer = { openStream: client.dialProtocol.bind(client) };
    const fetchFrom = (peer: CapabilityHost) => fetchRecord(dialer, peer.peerId, AbortSignal.timeout(5000));
    await expect(fetchFrom(bootstrap)).rejects.toMatchObject({
      name: "ProtocolError",
      code: NOT_A_PROVIDER,
    });
    const record = await fetchFrom(providers[2] as CapabilityHost);
    expect(record.peerId).toBe(String(providers[2]?.peerId));
  });
});
