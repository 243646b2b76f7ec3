/**
 * `npm run demo`: real local inference with the catalog models, through the same CLI a user types.
 * Uses INFERNET_MODEL_MIRROR if set; otherwise the project's shared offline mirror (../shared/models)
 * when it exists; otherwise downloads from the public sources. Data lives in INFERNET_HOME
 * (default ~/.infernet). Then a small real network on this machine: a provider node and a client that
 * finds it through the DHT and streams a generation from it over QUIC.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const bun = process.execPath;
const cli = join(root, "src/index.ts");
const env: Record<string, string | undefined> = { ...process.env };
const sharedMirror = resolve(root, "../shared/models");
if (!env.INFERNET_MODEL_MIRROR && existsSync(sharedMirror)) env.INFERNET_MODEL_MIRROR = sharedMirror;
const mnist = resolve(root, "../shared/data/mnist");

function step(title: string, args: string[]): number {
  process.stdout.write(
    `\n\x1b[1m$ infernet ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(" ")}\x1b[0m   # ${title}\n`,
  );
  const r = Bun.spawnSync([bun, cli, ...args], { env, stdout: "inherit", stderr: "inherit", stdin: "ignore" });
  if (r.exitCode !== 0) {
    process.stderr.write(`demo: step failed with exit code ${r.exitCode}\n`);
    process.exit(r.exitCode ?? 1);
  }
  return r.exitCode;
}

process.stdout.write(
  `Infernet demo: real local inference.\nModel mirror: ${env.INFERNET_MODEL_MIRROR ?? "(none: public sources)"}\n`,
);
step("what this machine has", ["gpu"]);
step("fetch and verify the demo models", ["pull", "stories260k", "mnist-8"]);
step("stream text from a language model", [
  "run",
  "stories260k",
  "Once upon a time",
  "--max-tokens",
  "120",
  "--verbose",
]);
if (existsSync(join(mnist, "t10k-images-idx3-ubyte.gz"))) {
  process.stdout.write(
    `\n\x1b[1m$ infernet run mnist-8 --input t10k-images-idx3-ubyte.gz --labels t10k-labels-idx1-ubyte.gz\x1b[0m   # classify 10,000 digits\n`,
  );
  const out = Bun.spawnSync(
    [
      bun,
      cli,
      "run",
      "mnist-8",
      "--input",
      join(mnist, "t10k-images-idx3-ubyte.gz"),
      "--labels",
      join(mnist, "t10k-labels-idx1-ubyte.gz"),
    ],
    { env, stdout: "pipe", stderr: "inherit" },
  );
  const lines = out.stdout.toString().trimEnd().split("\n");
  process.stdout.write(`${lines.slice(0, 5).join("\n")}\n... (${lines.length} lines)\n`);
  if (out.exitCode !== 0) process.exit(out.exitCode ?? 1);
}
step("the catalog", ["models"]);
await networkDemo();
process.stdout.write('\nDone. Try: ./bin/infernet run stories260k "The little dog"\n');

/** Waits (up to 20 s) until the provider's DHT record is stored and a client finds it. */
async function untilDiscoverable(clientEnv: Record<string, string | undefined>, peerId: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const r = Bun.spawnSync([bun, cli, "peers", "--model", "stories260k", "--json"], {
      env: clientEnv,
      stdin: "ignore",
    });
    if (r.exitCode === 0 && r.stdout.toString().includes(peerId)) return;
    await Bun.sleep(250);
  }
}

/** A provider node and a client on 127.0.0.1, each with its own INFERNET_HOME in a temporary folder. */
async function networkDemo(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "infernet-demo-"));
  const home = (name: string) => {
    mkdirSync(join(dir, name));
    return join(dir, name);
  };
  const providerHome = home("provider");
  process.stdout.write(
    `\n\x1b[1m$ infernet start --provider --models stories260k,mnist-8 --price 20\x1b[0m   # a provider node (in the background, own INFERNET_HOME)\n`,
  );
  const provider = Bun.spawn(
    [
      bun,
      cli,
      "start",
      "--provider",
      "--models",
      "stories260k,mnist-8",
      "--price",
      "20",
      "--json",
      "--listen",
      "/ip4/127.0.0.1/udp/0/quic-v1",
      "--listen",
      "/ip4/127.0.0.1/tcp/0",
      "--no-mdns",
    ],
    { env: { ...env, INFERNET_HOME: providerHome }, stdout: "pipe", stderr: "ignore" },
  );
  try {
    const reader = provider.stdout.getReader();
    const first = await reader.read();
    reader.releaseLock();
    if (first.done) throw new Error("the provider node did not start");
    const status = JSON.parse(new TextDecoder().decode(first.value).split("\n")[0] ?? "{}");
    const bootstrap = (status.addresses as string[]).find((a) => a.includes("quic")) ?? "";
    process.stdout.write(`provider ${status.peerId} listening on ${bootstrap}\n`);
    const clientEnv = { ...env, INFERNET_HOME: home("client"), INFERNET_BOOTSTRAP: bootstrap, INFERNET_MDNS: "false" };
    const clientStep = (title: string, args: string[]) => {
      const shown = args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(" ");
      process.stdout.write(`\n\x1b[1m$ infernet ${shown} --bootstrap <provider>\x1b[0m   # ${title}\n`);
      const r = Bun.spawnSync([bun, cli, ...args], {
        env: clientEnv,
        stdout: "inherit",
        stderr: "inherit",
        stdin: "ignore",
      });
      if (r.exitCode !== 0) throw new Error(`step failed with exit code ${r.exitCode}`);
    };
    await untilDiscoverable(clientEnv, status.peerId);
    clientStep("a client with no models finds the provider through the DHT", ["peers", "--model", "stories260k"]);
    clientStep("and streams a generation from it over QUIC", [
      "run",
      "stories260k",
      "Once upon a time",
      "--max-tokens",
      "60",
      "--remote",
      "--verbose",
    ]);
  } finally {
    provider.kill("SIGTERM");
    await provider.exited;
    rmSync(dir, { recursive: true, force: true });
  }
}
