import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { NodeStatus } from "../src/node/node.ts";
import { BUN, CLI, infernet } from "./helpers/cli.ts";
import { type NodeProcess, TEST_LISTEN, TestNetwork } from "./helpers/network.ts";
import { MNIST_DIR, ROOT, SHARED_MODELS } from "./helpers/paths.ts";

/**
 * The dashboard end to end, in a real pseudo-terminal (a detached tmux session on its own server
 * socket, so the user's tmux is never touched), driven with keys and read back with `capture-pane`:
 * `infernet dash` attached to a real provider process, and `infernet start` on a terminal, where the
 * dashboard owns the node, shows the shards of a job a real client submitted, adds a model, and stops
 * the node with `q`.
 */
const TMUX = Bun.which("tmux");
/** The pane size: narrow layout (under 120 columns), as over a small SSH window. */
const COLUMNS = 100;
const ROWS = 30;
const SOCKET = `infernet-test-${process.pid}`;
const SESSION = "dash";
/** Printed by the pane's shell after `infernet dash` returns, with its exit code. */
const EXIT_MARK = "DASH-EXIT=";

const net = new TestNetwork();
let provider: NodeProcess;

function tmux(...args: string[]): string {
  const r = Bun.spawnSync([TMUX ?? "tmux", "-L", SOCKET, ...args], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`tmux ${args[0]}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

const screen = (session = SESSION) => tmux("capture-pane", "-p", "-t", session);

/** Longest wait for a screen; past it the test fails showing the screen it saw last. */
const SCREEN_WAIT_MS = 60_000;

/** Waits until the pane shows what `check` wants. */
async function untilScreen(check: (s: string) => boolean, session = SESSION): Promise<string> {
  const deadline = Date.now() + SCREEN_WAIT_MS;
  for (;;) {
    const s = screen(session);
    if (check(s)) return s;
    if (Date.now() > deadline) throw new Error(`the screen never showed what was expected; it shows:\n${s}`);
    await Bun.sleep(50);
  }
}

/** Resets the terminal modes a shell runs with, as `stty -a` words: raw mode would show `-icanon -echo`. */
async function expectSaneTerminal(session: string): Promise<void> {
  // Back on the main screen, cursor shown, the pane alive, and the tty out of raw mode.
  expect(tmux("display", "-p", "-t", session, "#{alternate_on} #{cursor_flag} #{pane_dead}").trim()).toBe("0 1 0");
  tmux(
    "send-keys",
    "-t",
    session,
    "clear; stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo -e -icanon -e -echo",
    "Enter",
  );
  const modes = await untilScreen((s) => /^-?icanon$/m.test(s) && /^-?echo$/m.test(s), session);
  expect(modes).toMatch(/^icanon$/m);
  expect(modes).toMatch(/^echo$/m);
}

beforeAll(async () => {
  if (!TMUX) return;
  provider = await net.start("provider", ["--provider", "--models", "stories260k"]);
  // A plain shell in the pane, so the pane outlives the dashboard and its terminal state can be read.
  tmux("new-session", "-d", "-s", SESSION, "-x", String(COLUMNS), "-y", String(ROWS), "sh");
});

afterAll(async () => {
  if (TMUX) Bun.spawnSync([TMUX, "-L", SOCKET, "kill-server"]);
  await net[Symbol.asyncDispose]();
});

test.skipIf(!TMUX)(
  "the dashboard attaches to a running provider, shows it, and q leaves the terminal sane",
  async () => {
    const env = `INFERNET_HOME='${provider.home}' INFERNET_MODEL_MIRROR='${SHARED_MODELS}' INFERNET_MDNS=false`;
    tmux("send-keys", "-t", SESSION, `cd '${ROOT}' && ${env} '${BUN}' '${CLI}' dash; echo ${EXIT_MARK}$?`, "Enter");

    // Narrow layout: the header shows the node's short id (its last 8 characters).
    const id = provider.status.peerId.slice(-8);
    const first = await untilScreen((s) => s.includes(`…${id}`) && s.includes("Hardware"));
    expect(first).toContain("provider");
    expect(first).toContain("serving");
    expect(tmux("display", "-p", "-t", SESSION, "#{alternate_on}").trim()).toBe("1");

    // The jobs panel shows what the provider serves.
    tmux("send-keys", "-t", SESSION, "Tab");
    await untilScreen((s) => s.includes("▸ Jobs") && s.includes("serving stories260k"));

    // p pauses serving on the node itself: a headless `infernet status` would see it the same way.
    tmux("send-keys", "-t", SESSION, "p");
    await untilScreen((s) => s.includes("PAUSED"));
    tmux("send-keys", "-t", SESSION, "p");
    await untilScreen((s) => !s.includes("PAUSED") && s.includes("serving stories260k"));

    tmux("send-keys", "-t", SESSION, "q");
    // The mark with a digit after it: the typed command line holds the mark too (followed by `$?`).
    const after = await untilScreen((s) => new RegExp(`${EXIT_MARK}\\d`).test(s));
    expect(after).toContain(`${EXIT_MARK}0`);

    await expectSaneTerminal(SESSION);
  },
  120_000,
);

/** Wide enough for every panel at once (the Jobs panel beside the hardware). */
const WIDE = { columns: 150, rows: 45 };
const OWNER = "owner";
/** Shards of the client's job; each runs on both providers (redundancy 2). */
const SHARDS = 4;

test.skipIf(!TMUX)(
  "infernet start on a terminal: the provider's dashboard shows a client's job computed, adds a model, and q stops the node",
  async () => {
    const aggregator = await net.start("aggregator", ["--aggregator"]);
    const other = await net.start("other", ["--provider", "--models", "mnist-8", "--bootstrap", aggregator.quic]);
    const home = net.home("pane-provider");
    tmux("new-session", "-d", "-s", OWNER, "-x", String(WIDE.columns), "-y", String(WIDE.rows), "sh");
    const env = `INFERNET_HOME='${home}' INFERNET_MODEL_MIRROR='${SHARED_MODELS}' INFERNET_MDNS=false`;
    const start = [CLI, "start", "--provider", "--models", "mnist-8", ...TEST_LISTEN, "--bootstrap", aggregator.quic];
    tmux(
      "send-keys",
      "-t",
      OWNER,
      `cd '${ROOT}' && ${env} '${BUN}' ${start.map((a) => `'${a}'`).join(" ")}; echo ${EXIT_MARK}$?`,
      "Enter",
    );
    await untilScreen((s) => s.includes("▸ Hardware") && s.includes("serving mnist-8"), OWNER);
    // The node in the pane answers headless commands like any other: the dashboard is only its client.
    const status = JSON.parse((await infernet(["status", "--json"], { home })).stdout) as NodeStatus;
    expect(status.models.map((m) => m.name)).toEqual(["mnist-8"]);
    await net.discoverable(aggregator.quic, "mnist-8", [{ status }, other]);

    // A client submits a job to the aggregator; every shard runs on both providers, so on this one too.
    const client = net.home("client");
    const submit = await infernet(
      [
        "submit",
        "--model",
        "mnist-8",
        "--inputs",
        join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"),
        "--shards",
        String(SHARDS),
        "--aggregator",
        aggregator.quic,
        "--output",
        join(client, "labels.jsonl"),
        "--no-mdns",
      ],
      { home: client },
    );
    expect(submit.code).toBe(0);
    // The Jobs panel: each shard done for the aggregator, every record counted, and the served total.
    const agg = aggregator.status.peerId.slice(-8);
    const done = new RegExp(`shard +mnist-8 +…${agg} █+ +2500/2500 rec done`, "g");
    const jobs = await untilScreen((s) => (s.match(done)?.length ?? 0) === SHARDS, OWNER);
    expect(jobs).toContain(`0 running  0 queued  ${SHARDS} served  0 failed`);

    // m: add stories260k from the catalog (fetched from the mirror), and the node serves it.
    tmux("send-keys", "-t", OWNER, "m");
    await untilScreen((s) => s.includes("Models served by this node") && /\[x\] mnist-8/.test(s), OWNER);
    tmux("send-keys", "-t", OWNER, "Enter"); // the cursor starts on the first entry, stories260k
    await untilScreen((s) => /\[x\] stories260k/.test(s), OWNER);
    const after = JSON.parse((await infernet(["status", "--json"], { home })).stdout) as NodeStatus;
    expect(after.models.map((m) => m.name).sort()).toEqual(["mnist-8", "stories260k"]);
    // Esc closes the list; the next key waits for that (an esc and a key in one chunk read as alt-key).
    tmux("send-keys", "-t", OWNER, "Escape");
    await untilScreen((s) => !s.includes("Models served by this node") && s.includes("▸ Hardware"), OWNER);

    // q with nothing running stops the node at once; the shell gets the terminal back, sane.
    tmux("send-keys", "-t", OWNER, "q");
    const end = await untilScreen((s) => new RegExp(`${EXIT_MARK}\\d`).test(s), OWNER);
    expect(end).toContain(`Infernet node ${status.peerId} stopped.`);
    expect(end).toContain(`${EXIT_MARK}0`);
    expect((await infernet(["status", "--json"], { home })).code).not.toBe(0);
    await expectSaneTerminal(OWNER);
  },
  180_000,
);
