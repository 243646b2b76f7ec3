/**
 * `npm run demo`: real local inference with the catalog models, through the same CLI a user types.
 * Uses INFERNET_MODEL_MIRROR if set; otherwise the project's shared offline mirror (../shared/models)
 * when it exists; otherwise downloads from the public sources. Data lives in INFERNET_HOME
 * (default ~/.infernet). Then `infernet demo`: a small real network on this machine (an aggregator,
 * three providers and a client that streams a generation and runs a sharded, redundant MNIST job).
 */
import { existsSync } from "node:fs";
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
step("a local network: aggregator, 3 providers, a streamed prompt and a sharded, verified job", [
  "demo",
  ...(existsSync(join(mnist, "t10k-images-idx3-ubyte.gz"))
    ? ["--images", join(mnist, "t10k-images-idx3-ubyte.gz")]
    : []),
]);
// `infernet demo` ends with what to try next (from a checkout, `./bin/infernet` is the command).
