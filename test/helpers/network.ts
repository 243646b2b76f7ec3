import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import type { NodeStatus } from "../../src/node/node.ts";
import { BUN, CLI, infernet } from "./cli.ts";
import { SHARED_MODELS, tempDir } from "./paths.ts";

/** Loopback addresses test nodes listen on: free ports, QUIC and TCP. */
const LOOPBACK = ["/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0"];
/** The same as `infernet start` flags, never mDNS. */
export const TEST_LISTEN = [...LOOPBACK.flatMap((a) => ["--listen", a]), "--no-mdns"];
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

/** How to run a node's process listening on `listen` (fixed ports on a restart). */
type Launcher = (listen: string[]) => { argv: string[]; env: Record<string, string> };

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

  private readonly launchers = new Map<NodeProcess, Launcher>();

  /** Runs `infernet start --json` with `args` (and settings in `env`), on loopback, in a fresh home. */
  start(name: string, args: string[], env: Record<string, string> = {}): Promise<NodeProcess> {
    return this.launch(name, this.home(name), LOOPBACK, (listen) => ({
      argv: [CLI, "start", "--json", ...listen.flatMap((a) => ["--listen", a]), "--no-mdns", ...args],
      env,
    }));
  }

  /**
   * Runs a script that starts a node of its own (a fixture such as a lying provider) in a fresh
   * home. Like `infernet start --json`, it prints the node's status as one JSON line once it is up;
   * it reads its settings from the environment (INFERNET_LISTEN on loopback, mDNS off, plus `env`).
   */
  startScript(
    name: string,
    script: string,
    args: string[] = [],
    env: Record<string, string> = {},
  ): Promise<NodeProcess> {
    return this.launch(name, this.home(name), LOOPBACK, (listen) => ({
      argv: [script, ...args],
      env: { INFERNET_LISTEN: listen.join(","), ...env },
    }));
  }

  /** SIGKILL, as a crash: no goodbye to its peers, nothing flushed. Resolves once the process is gone. */
  async kill(node: NodeProcess): Promise<void> {
    node.proc.kill("SIGKILL");
    await node.proc.exited;
  }

  /**
   * Runs a stopped node again with its home (so its identity and store) and its ports, so the
   * multiaddrs its peers and clients recorded stay valid. The new process replaces it in `nodes`.
   */
  async restart(node: NodeProcess): Promise<NodeProcess> {
    const launcher = this.launchers.get(node);
    if (!launcher) throw new Error(`${node.name} is not a node of this network`);
    if (node.proc.exitCode === null && node.proc.signalCode === null) throw new Error(`${node.name} is still running`);
    const listen = node.status.addresses
      .filter((a) => a.startsWith("/ip4/127.0.0.1/"))
      .map((a) => a.replace(/\/p2p\/.*$/, ""));
    this.nodes.splice(this.nodes.indexOf(node), 1);
    this.launchers.delete(node);
    return await this.launch(node.name, node.home, listen, launcher);
  }

  private async launch(name: string, home: string, listen: string[], launcher: Launcher): Promise<NodeProcess> {
    const { argv, env } = launcher(listen);
    const proc = Bun.spawn([BUN, ...argv], {
      env: {
        ...process.env,
        INFERNET_HOME: home,
        INFERNET_MODEL_MIRROR: SHARED_MODELS,
        INFERNET_LOG: "info",
        INFERNET_MDNS: "false",
        ...env,
      },
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
    this.launchers.set(node, launcher);
    return node;
  }

  /** Waits until a fresh client that knows only `bootstrap` finds these providers of `model`. */
  async discoverable(bootstrap: string, model: string, providers: Pick<NodeProcess, "status">[]): Promise<void> {
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
