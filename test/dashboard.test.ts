import { afterAll, beforeAll, expect, test } from "bun:test";
import { BUN, CLI } from "./helpers/cli.ts";
import { type NodeProcess, TestNetwork } from "./helpers/network.ts";
import { ROOT, SHARED_MODELS } from "./helpers/paths.ts";

/**
 * `infernet dash` end to end: a real provider process, and the dashboard attached to it in a real
 * pseudo-terminal (a detached tmux session on its own server socket, so the user's tmux is never
 * touched), driven with keys and read back with `capture-pane`.
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

const screen = () => tmux("capture-pane", "-p", "-t", SESSION);

/** Waits until the pane shows `text`; bounded by the test's timeout, not a clock. */
async function untilScreen(check: (s: string) => boolean): Promise<string> {
  for (;;) {
    const s = screen();
    if (check(s)) return s;
    await Bun.sleep(50);
  }
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

    // Back on the main screen, cursor shown, the pane alive, and the tty out of raw mode.
    expect(tmux("display", "-p", "-t", SESSION, "#{alternate_on} #{cursor_flag} #{pane_dead}").trim()).toBe("0 1 0");
    tmux(
      "send-keys",
      "-t",
      SESSION,
      "clear; stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo -e -icanon -e -echo",
      "Enter",
    );
    const modes = await untilScreen((s) => /^-?icanon$/m.test(s) && /^-?echo$/m.test(s));
    expect(modes).toMatch(/^icanon$/m);
    expect(modes).toMatch(/^echo$/m);
  },
  120_000,
);
