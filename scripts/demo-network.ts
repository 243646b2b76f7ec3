/**
 * The network part of `npm run demo`: real nodes on 127.0.0.1, each a separate `infernet start`
 * process with its own INFERNET_HOME in a temporary folder. An aggregator (also the bootstrap peer),
 * three providers, and a client that finds a provider through the DHT, streams a generation from it
 * over QUIC, then submits sharded batch jobs (every shard computed by two different providers,
 * verified, merged in input order) and shows who computed what.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

/** Longest wait for a node to print its status line. */
const NODE_START_TIMEOUT_MS = 60_000;
/** Longest wait for the providers to be found through the DHT. */
const DISCOVERY_TIMEOUT_MS = 30_000;
const LOOPBACK = ["--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
const PROMPTS = ["a little cat", "a brave knight", "a tiny bird", "a big red ball", "a happy dog", "an old tree"];

interface NodeStatus {
  peerId: string;
  addresses: string[];
}

export async function networkDemo(
  bun: string,
  cli: string,
  env: Record<string, string | undefined>,
  mnistImages: string | undefined,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "infernet-demo-"));
  const home = (name: string) => {
    mkdirSync(join(dir, name), { recursive: true });
    return join(dir, name);
  };
  const nodes: Subprocess<"ignore", "pipe", "ignore">[] = [];
  const start = async (name: string, args: string[], shown: string): Promise<NodeStatus> => {
    process.stdout.write(
      `\n\x1b[1m$ infernet start ${shown}\x1b[0m   # ${name} (in the background, own INFERNET_HOME)\n`,
    );
    const proc = Bun.spawn([bun, cli, "start", "--json", ...LOOPBACK, ...args], {
      env: { ...env, INFERNET_HOME: home(name), INFERNET_MDNS: "false" },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "ignore",
    });
    nodes.push(proc);
    const status = await firstLine(proc);
    process.stdout.write(`${name} ${status.peerId}\n`);
    return status;
  };
  try {
    const aggregator = await start("aggregator", ["--aggregator", "--fee", "1%"], "--aggregator --fee 1%");
    const bootstrap = aggregator.addresses.find((a) => a.includes("/quic-v1/")) ?? "";
    const providers: NodeStatus[] = [];
    for (const name of ["provider-1", "provider-2", "provider-3"]) {
      const args = ["--provider", "--models", "stories260k,mnist-8", "--price", "20", "--bootstrap", bootstrap];
      providers.push(await start(name, args, "--provider --models stories260k,mnist-8 --price 20"));
    }
    const clientHome = home("client");
    const clientEnv = { ...env, INFERNET_HOME: clientHome, INFERNET_BOOTSTRAP: bootstrap, INFERNET_MDNS: "false" };
    const clientStep = (title: string, args: string[]) => {
      const shown = args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(" ");
      process.stdout.write(`\n\x1b[1m$ infernet ${shown}\x1b[0m   # ${title}\n`);
      const r = Bun.spawnSync([bun, cli, ...args], {
        env: clientEnv,
        cwd: clientHome,
        stdout: "inherit",
        stderr: "inherit",
        stdin: "ignore",
      });
      if (r.exitCode !== 0) throw new Error(`step failed with exit code ${r.exitCode}`);
    };
    await untilDiscoverable(
      bun,
      cli,
      clientEnv,
      providers.map((p) => p.peerId),
    );
    clientStep("a client with no models finds the providers through the DHT", ["peers", "--model", "stories260k"]);
    clientStep("and streams a generation from one of them over QUIC", [
      "run",
      "stories260k",
      "Once upon a time",
      "--max-tokens",
      "60",
      "--remote",
      "--verbose",
    ]);
    if (mnistImages) {
      clientStep("a sharded batch job: 20 shards, each computed by 2 different providers, verified, merged", [
        "submit",
        "--model",
        "mnist-8",
        "--inputs",
        mnistImages,
        "--shard-size",
        "500",
        "--redundancy",
        "2",
        "--output",
        join(clientHome, "digits.jsonl"),
      ]);
      const first = readFileSync(join(clientHome, "digits.jsonl"), "utf8").split("\n")[0];
      process.stdout.write(`first line of digits.jsonl: ${first}\n`);
    }
    writeFileSync(
      join(clientHome, "prompts.jsonl"),
      PROMPTS.map((p) => JSON.stringify({ prompt: `Once upon a time there was ${p}` })).join("\n"),
    );
    clientStep("prompts as a batch job: the same greedy text whichever provider computes it", [
      "submit",
      "--model",
      "stories260k",
      "--prompts",
      join(clientHome, "prompts.jsonl"),
      "--max-tokens",
      "40",
      "--shard-size",
      "2",
      "--output",
      join(clientHome, "stories.jsonl"),
    ]);
    for (const line of readFileSync(join(clientHome, "stories.jsonl"), "utf8").trim().split("\n").slice(0, 2)) {
      const { index, output } = JSON.parse(line) as { index: number; output: string };
      process.stdout.write(`  [${index}] ${PROMPTS[index]}: ${output.slice(0, 70)}...\n`);
    }
    clientStep("the jobs this client submitted", ["jobs"]);
  } finally {
    for (const n of nodes) n.kill("SIGTERM");
    await Promise.all(nodes.map((n) => n.exited));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function firstLine(proc: Subprocess<"ignore", "pipe", "ignore">): Promise<NodeStatus> {
  const reader = proc.stdout.getReader();
  let text = "";
  const timeout = setTimeout(() => proc.kill("SIGKILL"), NODE_START_TIMEOUT_MS);
  try {
    while (!text.includes("\n")) {
      const chunk = await reader.read();
      if (chunk.done) throw new Error("a node did not start (run it by hand to see why)");
      text += new TextDecoder().decode(chunk.value);
    }
  } finally {
    clearTimeout(timeout);
    reader.releaseLock();
  }
  return JSON.parse(text.slice(0, text.indexOf("\n"))) as NodeStatus;
}

/** Waits until a client finds every provider through the DHT (their records are stored by then). */
async function untilDiscoverable(
  bun: string,
  cli: string,
  clientEnv: Record<string, string | undefined>,
  peerIds: string[],
): Promise<void> {
  const deadline = Date.now() + DISCOVERY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const r = Bun.spawnSync([bun, cli, "peers", "--model", "mnist-8", "--json"], { env: clientEnv, stdin: "ignore" });
    const out = r.stdout.toString();
    if (r.exitCode === 0 && peerIds.every((id) => out.includes(id))) return;
    await Bun.sleep(250);
  }
}
