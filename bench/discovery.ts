/**
 * Discovery: a client that joins through one bootstrap finds a provider of a given model among 30
 * nodes (1 bootstrap + 29 others, one of which serves the model; the rest serve other models or
 * nothing). The 30 nodes run in a child process; the client runs here, a fresh identity each run.
 *
 * Timed from "create the client node" to "holds a verified capability record of the provider":
 * - dial:      the client dials the bootstrap itself as soon as it is up;
 * - bootstrap: the host's own bootstrap discovery (host.ts defaults), which waits before dialling.
 *
 * Usage: bun bench/discovery.ts [runs=7] [nodes=30]
 */
import { generateKeyPair } from "@libp2p/crypto/keys";
import { multiaddr } from "@multiformats/multiaddr";
import { createHost } from "../src/node/host.ts";
import { capabilityService } from "../src/node/protocols/capability/index.ts";
import {
  type CapabilityHost,
  describeProvider,
  LOOPBACK_QUIC,
  startTestNode,
  stopAll,
} from "../src/node/protocols/capability/testnet.ts";
import { BUN, machine, median } from "./lib.ts";

const TARGET_SHA = "5".repeat(64);
const otherSha = (i: number) => i.toString(16).padStart(2, "0").repeat(32);

if (process.argv[2] === "--network") {
  await serveNetwork(Number(process.argv[3] ?? 30));
} else {
  await measure(Number(process.argv[2] ?? 7), Number(process.argv[3] ?? 30));
}

/** Child process: starts the network, prints the bootstrap's addresses, runs until stdin closes. */
async function serveNetwork(nodes: number): Promise<void> {
  const bootstrap = await startTestNode();
  const hosts: CapabilityHost[] = [bootstrap];
  for (let i = 1; i < nodes; i++) {
    const models =
      i === nodes - 1
        ? [{ name: "target", sha256: TARGET_SHA, runtime: "llama" as const }]
        : i % 2
          ? [{ name: `other-${i}`, sha256: otherSha(i), runtime: "onnx" as const }]
          : [];
    const describe = models.length
      ? describeProvider({ models, price: 10, load: { active: 0, queued: 0, maxConcurrent: 2 } })
      : undefined;
    hosts.push(await startTestNode({ bootstrap, ...(describe ? { describe } : {}) }));
  }
  // Settled when the bootstrap can resolve the target's provider record.
  for (;;) {
    const found = await bootstrap.services.capability.findProviders(TARGET_SHA, { limit: 1, timeoutMs: 2000 });
    if (found.length) break;
    await Bun.sleep(200);
  }
  console.log(JSON.stringify({ bootstrap: bootstrap.getMultiaddrs().map(String) }));
  for await (const _ of Bun.stdin.stream()) {
    // Parent keeps stdin open while it measures.
  }
  await stopAll(hosts);
  process.exit(0);
}

interface Run {
  /** createHost until it returns (keys, transports, services started). */
  startMs: number;
  /** Node creation until a verified record of the provider is held. */
  totalMs: number;
}

async function clientRun(bootstrap: string[], mode: "dial" | "bootstrap"): Promise<Run> {
  const begin = performance.now();
  const client = (await createHost({
    privateKey: await generateKeyPair("Ed25519"),
    listen: [LOOPBACK_QUIC],
    mdns: false,
    bootstrap,
    services: { capability: capabilityService() },
  })) as CapabilityHost;
  const startMs = performance.now() - begin;
  try {
    if (mode === "dial") await client.dial(bootstrap.map((a) => multiaddr(a)));
    const found = await client.services.capability.findProviders(TARGET_SHA, { limit: 1, timeoutMs: 10_000 });
    const totalMs = performance.now() - begin;
    if (found.length !== 1) throw new Error(`found ${found.length} providers`);
    return { startMs, totalMs };
  } finally {
    await client.stop();
  }
}

async function measure(runs: number, nodes: number): Promise<void> {
  const child = Bun.spawn([BUN, import.meta.path, "--network", String(nodes)], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("network process exited");
    text += new TextDecoder().decode(value);
  }
  const { bootstrap } = JSON.parse(text.split("\n")[0] as string) as { bootstrap: string[] };
  const results: Record<string, Run[]> = { dial: [], bootstrap: [] };
  try {
    for (let i = 0; i < runs; i++) {
      for (const mode of ["dial", "bootstrap"] as const) {
        const r = await clientRun(bootstrap, mode);
        results[mode]?.push(r);
      }
    }
  } finally {
    child.stdin.end();
    await child.exited;
  }
  console.log(`machine: ${machine()}`);
  console.log(`network: ${nodes} nodes in one child process (1 bootstrap, 1 provider of the model), QUIC on 127.0.0.1`);
  for (const [mode, rs] of Object.entries(results)) {
    const total = rs.map((r) => r.totalMs).sort((a, b) => a - b);
    console.log(
      `${mode.padEnd(9)} client start -> provider record: median ${median(total).toFixed(0)} ms ` +
        `(min ${total[0]?.toFixed(0)}, max ${total.at(-1)?.toFixed(0)}, ${rs.length} runs; ` +
        `node start alone median ${median(rs.map((r) => r.startMs)).toFixed(0)} ms)`,
    );
  }
}
