/**
 * A provider node's footprint: idle RSS and CPU (a real `infernet start --provider` process, measured
 * from /proc), then its RSS while 1,000 remote requests go through it and after it settles again.
 * RSS alone cannot tell a leak from a collector that has not run yet, so the same requests then go to
 * a provider node in this process, where the heap is measured after a forced full collection.
 * Usage: bun bench/node-rss.ts [requests=1000] [idleSeconds=10]
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { peerIdFromString } from "@libp2p/peer-id";
import { loadConfig } from "../src/config/index.ts";
import { resolveLocalModel } from "../src/models/local.ts";
import { InfernetNode } from "../src/node/node.ts";
import { Store } from "../src/store/db.ts";
import { BUN, CLI, MIRROR, machine } from "./lib.ts";

const REQUESTS = Number(process.argv[2] ?? 1000);
const IDLE_SECONDS = Number(process.argv[3] ?? 10);
const CONCURRENCY = 4;
const STORIES = { name: "stories260k", sha256: "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d" };
const CLOCK_TICKS = 100; // USER_HZ on Linux

const dir = mkdtempSync(join(tmpdir(), "infernet-rss-"));
mkdirSync(join(dir, "provider"));
const provider = Bun.spawn(
  [
    BUN,
    CLI,
    "start",
    "--json",
    "--provider",
    "--models",
    "stories260k",
    "--listen",
    "/ip4/127.0.0.1/udp/0/quic-v1",
    "--no-mdns",
  ],
  {
    env: { ...process.env, INFERNET_HOME: join(dir, "provider"), INFERNET_MODEL_MIRROR: MIRROR },
    stdout: "pipe",
    stderr: "ignore",
  },
);

const reader = provider.stdout.getReader();
const first = await reader.read();
const status = JSON.parse(new TextDecoder().decode(first.value).split("\n")[0]!);
const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${provider.pid}/status`, "utf8"))![1]) / 1024;
const cpuSeconds = () => {
  const fields = readFileSync(`/proc/${provider.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
};

async function idle(label: string): Promise<void> {
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  await Bun.sleep(IDLE_SECONDS * 1000);
  const cpu = ((cpuSeconds() - cpu0) / ((performance.now() - t0) / 1000)) * 100;
  console.log(`${label}: RSS ${rssMiB().toFixed(0)} MiB, CPU ${cpu.toFixed(2)}% of one core over ${IDLE_SECONDS} s`);
}

console.log(`machine: ${machine()}`);
await idle("provider idle after start");

const home = join(dir, "client");
mkdirSync(home);
const config = loadConfig({
  env: { INFERNET_HOME: home, INFERNET_BOOTSTRAP: status.addresses[0], INFERNET_MDNS: "false" },
});
using store = Store.open(home);
const client = await InfernetNode.start({ config, store, ephemeral: true });
const peer = peerIdFromString(status.peerId);
let done = 0;
const checkpoints = new Set([REQUESTS / 4, REQUESTS / 2, REQUESTS].map(Math.round));
const t0 = performance.now();
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (done < REQUESTS) {
      done += 1;
      const n = done;
      for await (const _ of client.infer.infer(peer, STORIES, {
        kind: "generate",
        prompt: "Once upon a time",
        maxTokens: 8,
      })) {
      }
      if (checkpoints.has(n)) console.log(`after ${n} requests: provider RSS ${rssMiB().toFixed(0)} MiB`);
    }
  }),
);
console.log(
  `${REQUESTS} requests (8 tokens each, ${CONCURRENCY} at a time) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
await client.stop();
await idle("provider idle again");
provider.kill("SIGTERM");
await provider.exited;

// The same traffic against an in-process provider, heap measured after forced collections.
const inProcess = await startNode(join(dir, "p2"), {}, true);
const inClient = await startNode(join(dir, "c2"), { INFERNET_BOOTSTRAP: inProcess.addresses()[0]! }, false);
const heapMiB = () => {
  Bun.gc(true);
  return process.memoryUsage().heapUsed / 2 ** 20;
};
const before = heapMiB();
console.log(`in-process provider: heap after GC ${before.toFixed(1)} MiB before requests`);
for (let i = 1; i <= REQUESTS; i++) {
  for await (const _ of inClient.infer.infer(peerIdFromString(inProcess.peerId), STORIES, {
    kind: "generate",
    prompt: "Once upon a time",
    maxTokens: 8,
  })) {
  }
  if (checkpoints.has(i)) console.log(`  after ${i} requests: heap after GC ${heapMiB().toFixed(1)} MiB`);
}
await Bun.sleep(6_000); // libp2p forgets finished streams after its negotiation timeout
console.log(
  `  after 6 s idle: heap after GC ${heapMiB().toFixed(1)} MiB (growth ${(heapMiB() - before).toFixed(1)} MiB)`,
);
await inClient.stop();
await inProcess.stop();
rmSync(dir, { recursive: true, force: true });
process.exit(0);

async function startNode(home: string, env: Record<string, string>, serve: boolean): Promise<InfernetNode> {
  mkdirSync(home);
  const config = loadConfig({
    env: {
      INFERNET_HOME: home,
      INFERNET_MDNS: "false",
      INFERNET_LISTEN: "/ip4/127.0.0.1/udp/0/quic-v1",
      INFERNET_MODEL_MIRROR: MIRROR,
      ...env,
    },
  });
  const nodeStore = Store.open(home);
  const models = serve ? [await resolveLocalModel("stories260k", { config, store: nodeStore })] : [];
  return InfernetNode.start({ config, store: nodeStore, serve: models, ephemeral: !serve });
}
