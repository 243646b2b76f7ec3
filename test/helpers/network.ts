import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import type { NodeStatus } from "../../src/node/node.ts";
import { BUN, CLI, infernet } from "./cli.ts";
import { SHARED_MODELS, tempDir } from "./paths.ts";

/** Loopback listen addresses for test nodes: free ports, QUIC and TCP, never mDNS. */
export const TEST_LISTEN = [
  "--listen",
  "/ip4/127.0.0.1/udp/0/quic-v1",
  "--listen",
  "/ip4/127.0.0.1/tcp/0",
  "--no-mdns",
];
/** Longest wait for a node process to come up. */
const START_TIMEOUT_MS = 30_000;

export interface NodeProcess {
  name: string;
  home: string;
  status: NodeStatus;
  /** The node's QUIC multiaddr with its peer id, to bootstrap from. */
  quic: string;
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Everything the node wrote to stderr so far (its log), for failure messages. */
  log(): string;
}

/**
 * A network of real `infernet start` processes on 127.0.0.1, each with its own INFERNET_HOME,
 * torn down (SIGKILL at the latest) however the test ends.
 */
export class TestNetwork implements AsyncDisposable {
  readonly nodes: NodeProcess[] = [];
  private readonly dir = tempDir("infernet-net-");

  /** A fresh INFERNET_HOME for a client process. */
  home(name: string): string {
    const home = join(this.dir.path, name);
    mkdirSync(home, { recursive: true });
    return home;
  }

  async start(name: string, args: string[]): Promise<NodeProcess> {
    const home = this.home(name);
    const proc = Bun.spawn([BUN, CLI, "start", "--json", ...TEST_LISTEN, ...args], {
      env: { ...process.env, INFERNET_HOME: home, INFERNET_MODEL_MIRROR: SHARED_MODELS, INFERNET_LOG: "info" },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    let stderr = "";
    void (async () => {
      for await (const chunk of proc.stderr) stderr += new TextDecoder().decode(chunk);
    })();
    const line = await firstLine(proc, START_TIMEOUT_MS).catch((err: Error) => {
      proc.kill("SIGKILL");
      throw new Error(`${name} did not start: ${err.message}\n${stderr}`);
    });
    const status = JSON.parse(line) as NodeStatus;
    const quic = status.addresses.find((a) => a.includes("/quic-v1/"));
    if (!quic) throw new Error(`${name} has no QUIC address: ${status.addresses.join(", ")}`);
    const node: NodeProcess = { name, home, status, quic, proc, log: () => stderr };
    this.nodes.push(node);
    return node;
  }

  /** Waits until a fresh client that knows only `bootstrap` finds these providers of `model`. */
  async discoverable(bootstrap: string, model: string, providers: NodeProcess[]): Promise<void> {
    const want = providers.map((p) => p.status.peerId).sort();
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (let i = 0; ; i++) {
      const r = await infernet(["peers", "--model", model, "--json", "--bootstrap", bootstrap, "--no-mdns"], {
        home: this.home(`probe-${i}`),
      });
      const found = r.code === 0 ? (JSON.parse(r.stdout) as { peerId: string }[]).map((x) => x.peerId).sort() : [];
      if (want.every((id) => found.includes(id))) return;
      if (Date.now() > deadline) throw new Error(`providers not discoverable: found ${found.join(", ")}\n${r.stderr}`);
      await Bun.sleep(200);
    }
  }

  byPeerId(peerId: string): NodeProcess | undefined {
    return this.nodes.find((n) => n.status.peerId === peerId);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const n of this.nodes) n.proc.kill("SIGTERM");
    await Promise.all(
      this.nodes.map((n) => Promise.race([n.proc.exited, Bun.sleep(5_000).then(() => n.proc.kill("SIGKILL"))])),
    );
    this.dir[Symbol.dispose]();
  }
}

async function firstLine(proc: Subprocess<"ignore", "pipe", "pipe">, timeoutMs: number): Promise<string> {
  const reader = proc.stdout.getReader();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  try {
    while (!text.includes("\n")) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timed out");
      const chunk = await Promise.race([
        reader.read(),
        Bun.sleep(left).then(() => ({ done: true, value: undefined, timeout: true }) as const),
      ]);
      if ("timeout" in chunk) throw new Error("timed out");
      if (chunk.done) throw new Error("exited before printing its status");
      text += new TextDecoder().decode(chunk.value);
    }
  } finally {
    reader.releaseLock();
  }
  return text.slice(0, text.indexOf("\n"));
}
