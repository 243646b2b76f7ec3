import { afterAll, expect, test } from "bun:test";
import { MNIST_SHA } from "./fixtures.ts";
import { NOT_A_PROVIDER } from "./messages.ts";
import { fetchRecord } from "./protocol.ts";
import { type CapabilityHost, describeProvider, type ProviderState, startTestNode, stopAll, until } from "./testnet.ts";

/**
 * A node that may serve later (`infernet start` without models, then the dashboard's `m`): its
 * `describe` says "nothing to announce" until it serves, and again once it serves nothing. Real QUIC
 * on 127.0.0.1, mDNS off.
 */
const hosts: CapabilityHost[] = [];
afterAll(() => stopAll(hosts));

test("nothing is announced or answered while describe has nothing; serving starts and stops both", async () => {
  const bootstrap = await startTestNode();
  hosts.push(bootstrap);
  const state: ProviderState = { models: [], price: 10, load: { active: 0, queued: 0, maxConcurrent: 2 } };
  const provider = describeProvider(state);
  const node = await startTestNode({ bootstrap, describe: () => (state.models.length ? provider() : undefined) });
  const client = await startTestNode({ bootstrap });
  hosts.push(node, client);
  const dialer = { openStream: client.dialProtocol.bind(client) };
  const fetchFromNode = () => fetchRecord(dialer, node.peerId, AbortSignal.timeout(5000));

  await node.services.capability.announce();
  expect(node.services.capability.current()).toBeUndefined();
  await expect(fetchFromNode()).rejects.toMatchObject({ name: "ProtocolError", code: NOT_A_PROVIDER });
  expect(bootstrap.services.capability.directory.get(node.peerId.toString())).toBeUndefined();

  state.models = [{ name: "mnist-8", sha256: MNIST_SHA, runtime: "onnx" }];
  await node.services.capability.announce();
  expect(node.services.capability.current()?.models.map((m) => m.name)).toEqual(["mnist-8"]);
  const found = await until(async () => {
    const records = await client.services.capability.findProviders(MNIST_SHA, { timeoutMs: 3000 });
    return records.find((r) => r.peerId === node.peerId.toString());
  }, 10_000);
  expect(found.models.map((m) => m.sha256)).toEqual([MNIST_SHA]);

  state.models = [];
  await node.services.capability.announce();
  expect(node.services.capability.current()).toBeUndefined();
  await expect(fetchFromNode()).rejects.toMatchObject({ name: "ProtocolError", code: NOT_A_PROVIDER });
});
