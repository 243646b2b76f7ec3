import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type NodeProcess, TestNetwork } from "./helpers/network.ts";

/**
 * A bootstrap node (here an aggregator) that is SIGKILLed and started again on its ports comes back
 * with an empty DHT and directory. Its providers must tell it of themselves again, whoever redials it:
 * the node's own check every BOOTSTRAP_CHECK_MS, or libp2p's reconnect queue (the bootstrap module
 * tags these peers keep-alive), which often wins the race. Real processes over QUIC on 127.0.0.1.
 */
const PROVIDERS = ["p1", "p2", "p3", "p4"];

/** Lines of a node's log file (INFERNET_HOME/logs/infernet.log) with this message. */
function logged(node: NodeProcess, msg: string): unknown[] {
  const text = readFileSync(join(node.home, "logs", "infernet.log"), "utf8");
  return text
    .split("\n")
    .filter((line) => line.includes(`"msg":"${msg}"`))
    .map((line) => JSON.parse(line));
}

test("a restarted aggregator learns every provider again, whoever redials it: each provides and announces once identify has run", async () => {
  await using net = new TestNetwork();
  const aggregator = await net.start("aggregator", ["--aggregator", "--fee", "1%"]);
  const args = ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic];
  const providers = await Promise.all(PROVIDERS.map((name) => net.start(name, args)));
  await net.discoverable(aggregator.quic, "mnist-8", providers);
  for (const p of providers) expect(logged(p, "bootstrap peer reconnected")).toEqual([]);

  await net.kill(aggregator);
  const again = await net.restart(aggregator);
  await net.discoverable(again.quic, "mnist-8", providers);
  // Each provider saw the aggregator come back, by whichever dial, and re-provided to it.
  for (const p of providers) expect(logged(p, "bootstrap peer reconnected").length).toBeGreaterThanOrEqual(1);
  // Nodes without payment channels never dial a chain (none is configured here): no warning about it.
  for (const n of [again, ...providers]) expect(logged(n, "chain tip not read")).toEqual([]);
}, 120_000);
