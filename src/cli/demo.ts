import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import type { Subprocess } from "bun";
import { environment } from "../config/index.ts";
import { resolveLocalModel } from "../models/local.ts";
import { sleep } from "../util/abort.ts";
import { FileNotFoundError, InvalidInputError, RuntimeError, TimeoutError, UsageError } from "../util/errors.ts";
import { intFlag } from "./args.ts";
import type { CliContext, Output } from "./command.ts";
import { defineCommand } from "./command.ts";
import { progressReporter } from "./progress.ts";

/**
 * `infernet demo`: a real network on this machine. An aggregator (also the bootstrap peer) and three
 * providers, each a separate `infernet start` process of this same executable with its own
 * INFERNET_HOME in a temporary folder, then a client that finds the providers through the DHT,
 * streams a stories260k generation over QUIC, and submits a sharded MNIST job whose every shard is
 * computed by two different providers, verified and merged; `infernet job` then shows who computed
 * what, the verdicts and the cost. Everything is stopped and removed at the end.
 */

/** The models the demo uses; fetched (mirror first) into the user's models folder, shared by every node. */
export const DEMO_MODELS = ["stories260k", "mnist-8"] as const;
/** Longest wait for a node to print its status line. */
export const NODE_START_TIMEOUT_MS = 60_000;
/** Longest wait for every provider to be findable through the DHT. */
export const DISCOVERY_TIMEOUT_MS = 30_000;
/** Pause between discovery polls. */
const DISCOVERY_POLL_MS = 250;
/** The MNIST test set file looked for; a subset of `--count` images is taken from it. */
export const MNIST_IMAGES = "t10k-images-idx3-ubyte.gz";
/** Images generated when no MNIST file is found (rings and bars), and the default subset size. */
export const GENERATED_IMAGES = 200;
export const MAX_DEMO_IMAGES = 10_000;
const SHARD_SIZE = 500;
const PROVIDERS = 3;
const REDUNDANCY = 2;
const PRICE = 20;
const LOOPBACK = ["--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
/** Settings a user's environment may hold that would pull the demo's nodes off loopback or onto the user's node. */
const CLEARED_ENV = ["INFERNET_LISTEN", "INFERNET_ANNOUNCE", "INFERNET_BOOTSTRAP", "INFERNET_HOME"];

export const demoCommand = defineCommand({
  name: "demo",
  usage: ["demo [--images FILE | --generated] [--count N]"],
  details: [
    `Starts an aggregator and ${PROVIDERS} providers on 127.0.0.1 (child processes, temporary homes), then a`,
    `client streams a stories260k prompt and submits an MNIST job (shards of ${SHARD_SIZE}, redundancy ${REDUNDANCY}).`,
    `Models come from INFERNET_MODEL_MIRROR or are downloaded once. MNIST images: --images, else ${MNIST_IMAGES}`,
    "in ../shared/data/mnist beside the checkout or the working folder; without one (or with --generated),",
    `${GENERATED_IMAGES} generated shapes: rings and bars.`,
    "",
    "Examples:",
    "  infernet demo",
    `  infernet demo --images ~/data/${MNIST_IMAGES} --count 2000`,
  ].join("\n"),
  options: {
    images: { type: "string", value: "FILE", description: `MNIST images (IDX, .gz or raw), e.g. ${MNIST_IMAGES}` },
    generated: { type: "boolean", description: "Classify generated rings and bars, as when no MNIST file is found" },
    count: { type: "string", value: "N", description: `Images to classify (default all, at most ${MAX_DEMO_IMAGES})` },
  },
  async run(ctx, { values }) {
    const count = intFlag("demo", "count", values.count, 1, MAX_DEMO_IMAGES);
    if (values.generated && values.images)
      throw new UsageError("demo: --images and --generated name two sources of images; give one");
    const config = ctx.config();
    const store = ctx.store();
    say(ctx, `Infernet demo. Model mirror: ${config.modelMirror || "(none: public sources)"}`);
    for (const name of DEMO_MODELS) {
      const m = await resolveLocalModel(name, {
        config,
        store,
        signal: ctx.signal,
        onProgress: progressReporter(ctx.stderr, name),
      });
      ctx.stdout.write(`${name}: ${m.path}\n`);
    }
    const dir = mkdtempSync(join(tmpdir(), "infernet-demo-"));
    try {
      const images = values.generated
        ? generatedImagesFile(ctx.stdout, dir, count, "as --generated asked")
        : demoImages(ctx.stdout, dir, values.images, count);
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(environment())) if (v !== undefined && !CLEARED_ENV.includes(k)) env[k] = v;
      Object.assign(env, {
        INFERNET_MODELS_DIR: config.modelsDir,
        INFERNET_MODEL_MIRROR: config.modelMirror,
        INFERNET_MDNS: "false",
      });
      await network(ctx, dir, env, images);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    say(ctx, 'Done. Try: infernet run stories260k "The little dog"');
    return 0;
  },
});

/** How to start this same program again: the binary itself when compiled, else bun and the entry script. */
export function selfCommand(): string[] {
  const main = Bun.main;
  return /\.[cm]?[jt]sx?$/.test(main) && !main.startsWith("/$bunfs/") ? [process.execPath, main] : [process.execPath];
}

function say(ctx: CliContext, text: string): void {
  ctx.stdout.write(`\n${text}\n`);
}

function shown(args: string[]): string {
  return args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(" ");
}

interface NodeStatus {
  peerId: string;
  addresses: string[];
}

async function network(ctx: CliContext, dir: string, env: Record<string, string>, images: string): Promise<void> {
  const home = (name: string) => {
    mkdirSync(join(dir, name), { recursive: true });
    return join(dir, name);
  };
  const nodes: Subprocess<"ignore", "pipe", "pipe">[] = [];
  const start = async (name: string, args: string[]): Promise<NodeStatus> => {
    ctx.stdout.write(`\n$ infernet start ${shown(args)}   # ${name} (background, own INFERNET_HOME)\n`);
    const proc = Bun.spawn([...selfCommand(), "start", "--json", ...LOOPBACK, ...args], {
      env: { ...env, INFERNET_HOME: home(name) },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    nodes.push(proc);
    const status = await firstLine(proc, name, ctx.signal);
    ctx.stdout.write(`${name}: peer ${status.peerId}\n`);
    return status;
  };
  try {
    const aggregator = await start("aggregator", ["--aggregator", "--fee", "1%"]);
    const bootstrap = aggregator.addresses.find((a) => a.includes("/quic-v1/")) ?? aggregator.addresses[0] ?? "";
    const providers: NodeStatus[] = [];
    for (let i = 1; i <= PROVIDERS; i++) {
      const args = [
        "--provider",
        "--models",
        DEMO_MODELS.join(","),
        "--price",
        String(PRICE),
        "--bootstrap",
        bootstrap,
      ];
      providers.push(await start(`provider-${i}`, args));
    }
    const clientHome = home("client");
    const clientEnv = { ...env, INFERNET_HOME: clientHome, INFERNET_BOOTSTRAP: bootstrap };
    const client = (title: string, args: string[]) => step(ctx, title, args, clientEnv, clientHome);
    await untilDiscoverable(
      clientEnv,
      providers.map((p) => p.peerId),
      ctx.signal,
    );
    await client("a client with no models finds the providers through the DHT", ["peers", "--model", "stories260k"]);
    await client("and streams a generation from one of them over QUIC", [
      "run",
      "stories260k",
      "Once upon a time",
      "--max-tokens",
      "60",
      "--remote",
      "--verbose",
    ]);
    const output = join(clientHome, "digits.jsonl");
    const submitted = await client(
      `a sharded job: shards of ${SHARD_SIZE} images, each computed by ${REDUNDANCY} different providers, verified, merged`,
      [
        "submit",
        "--model",
        "mnist-8",
        "--inputs",
        images,
        "--shard-size",
        String(SHARD_SIZE),
        "--redundancy",
        String(REDUNDANCY),
        "--output",
        output,
      ],
    );
    ctx.stdout.write(`first line of digits.jsonl: ${readFileSync(output, "utf8").split("\n")[0]}\n`);
    const jobId = /job (\S+) (submitted to|already held by)/.exec(submitted.stderr)?.[1];
    if (jobId) await client("who computed what, the verification verdicts and the cost", ["job", jobId]);
  } finally {
    for (const n of nodes) n.kill("SIGTERM");
    await Promise.all(nodes.map((n) => n.exited));
  }
}

/** Runs one client command, its output shown as it comes; a failure ends the demo with its words. */
async function step(
  ctx: CliContext,
  title: string,
  args: string[],
  env: Record<string, string>,
  cwd: string,
): Promise<{ stderr: string }> {
  ctx.stdout.write(`\n$ infernet ${shown(args)}   # ${title}\n`);
  const proc = Bun.spawn([...selfCommand(), ...args], { env, cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const abort = () => proc.kill("SIGTERM");
  ctx.signal.addEventListener("abort", abort, { once: true });
  let stderr = "";
  const pump = async (stream: ReadableStream<Uint8Array>, write: (t: string) => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) write(decoder.decode(chunk, { stream: true }));
  };
  try {
    const [, , code] = await Promise.all([
      pump(proc.stdout, (t) => ctx.stdout.write(t)),
      pump(proc.stderr, (t) => {
        stderr += t;
        ctx.stderr.write(t);
      }),
      proc.exited,
    ]);
    if (code !== 0)
      throw new RuntimeError(`demo: \`infernet ${args[0]}\` failed with exit code ${code}`, {
        hint: "its own message is above",
      });
    return { stderr };
  } finally {
    ctx.signal.removeEventListener("abort", abort);
  }
}

async function firstLine(
  proc: Subprocess<"ignore", "pipe", "pipe">,
  name: string,
  signal: AbortSignal,
): Promise<NodeStatus> {
  const deadline = AbortSignal.any([signal, AbortSignal.timeout(NODE_START_TIMEOUT_MS)]);
  const kill = () => proc.kill("SIGKILL");
  deadline.addEventListener("abort", kill, { once: true });
  const reader = proc.stdout.getReader();
  let text = "";
  try {
    while (!text.includes("\n")) {
      const chunk = await reader.read();
      if (chunk.done) {
        const why = (await new Response(proc.stderr).text()).trim().split("\n").at(-1);
        if (signal.aborted) throw signal.reason;
        throw new RuntimeError(`demo: the ${name} node did not start${why ? `: ${why}` : ""}`, {
          hint: "run `infernet doctor` to see what is wrong",
        });
      }
      text += new TextDecoder().decode(chunk.value);
    }
  } finally {
    deadline.removeEventListener("abort", kill);
    reader.releaseLock();
  }
  return JSON.parse(text.slice(0, text.indexOf("\n"))) as NodeStatus;
}

/** Waits until a client finds every provider through the DHT (their records are stored by then). */
async function untilDiscoverable(env: Record<string, string>, peerIds: string[], signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + DISCOVERY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const proc = Bun.spawn([...selfCommand(), "peers", "--model", "mnist-8", "--json"], {
      env,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "ignore",
    });
    const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    if (code === 0 && peerIds.every((id) => out.includes(id))) return;
    await sleep(DISCOVERY_POLL_MS, signal);
  }
  throw new TimeoutError(`demo: the providers were not found through the DHT within ${DISCOVERY_TIMEOUT_MS / 1000} s`);
}

/** Where the MNIST test set is looked for without `--images`: beside the checkout, then the working folder. */
function mnistCandidates(): string[] {
  return [
    resolve(dirname(Bun.main), "../../shared/data/mnist", MNIST_IMAGES),
    resolve("../shared/data/mnist", MNIST_IMAGES),
    resolve(MNIST_IMAGES),
  ];
}

/**
 * The MNIST images to classify, as a file in `dir` or the one found: `--images`, else the first of
 * `candidates` that exists, cut to `count` images; without any, `GENERATED_IMAGES` drawn rings and
 * bars (said so on `out`).
 */
export function demoImages(
  out: Pick<Output, "write">,
  dir: string,
  given: string | undefined,
  count: number | undefined,
  candidates = given ? [resolve(given)] : mnistCandidates(),
): string {
  const found = candidates.find((p) => existsSync(p));
  if (!found && given)
    throw new FileNotFoundError(`demo: ${given} does not exist`, {
      hint: `give an MNIST IDX file such as ${MNIST_IMAGES}`,
    });
  if (!found) {
    const why = `no MNIST test set found: looked for ${candidates.join(", ")}; --images names one`;
    return generatedImagesFile(out, dir, count, why);
  }
  if (count === undefined) {
    out.write(`MNIST images: ${found}\n`);
    return found;
  }
  const raw = readFileSync(found);
  const data = raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw;
  if (
    data.length < 16 ||
    data.readUInt32BE(0) !== 0x00000803 ||
    data.readUInt32BE(8) !== 28 ||
    data.readUInt32BE(12) !== 28
  ) {
    throw new InvalidInputError(`demo: ${found} is not an IDX file of 28x28 images`, { hint: `give ${MNIST_IMAGES}` });
  }
  const total = Math.min(data.readUInt32BE(4), Math.floor((data.length - 16) / 784));
  const n = Math.min(count, total);
  out.write(`MNIST images: the first ${n} of ${found}\n`);
  return writeIdx(join(dir, "images.idx"), { count: n, pixels: data.subarray(16, 16 + n * 28 * 28) });
}

/** Writes `count` (default `GENERATED_IMAGES`) generated images as an IDX file, saying so and why. */
function generatedImagesFile(out: Pick<Output, "write">, dir: string, count: number | undefined, why: string): string {
  const n = count ?? GENERATED_IMAGES;
  out.write(`Using ${n} generated images (rings and bars) instead of MNIST (${why}).\n`);
  return writeIdx(join(dir, "generated-images.idx"), generatedImages(n));
}

/** 28x28 greyscale images alternating a ring (a "0") and a vertical bar (a "1"). */
function generatedImages(count: number): { count: number; pixels: Uint8Array } {
  const pixels = new Uint8Array(count * 28 * 28);
  for (let i = 0; i < count; i++) {
    for (let y = 0; y < 28; y++) {
      for (let x = 0; x < 28; x++) {
        const r = Math.hypot((x - 14) / 6, (y - 14) / 9);
        const on = i % 2 === 0 ? Math.abs(r - 1) < 0.25 : Math.abs(x - 14 - ((i >> 1) % 3) + 1) <= 1 && y > 4 && y < 24;
        pixels[i * 784 + y * 28 + x] = on ? 255 : 0;
      }
    }
  }
  return { count, pixels };
}

function writeIdx(path: string, images: { count: number; pixels: Uint8Array }): string {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x00000803, 0);
  header.writeUInt32BE(images.count, 4);
  header.writeUInt32BE(28, 8);
  header.writeUInt32BE(28, 12);
  writeFileSync(path, Buffer.concat([header, images.pixels]));
  return path;
}
