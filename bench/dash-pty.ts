import { closeSync, existsSync, openSync, readlinkSync, readSync, realpathSync, statSync } from "node:fs";
import { join } from "node:path";
import { TMUX, Tmux } from "../test/helpers/tmux.ts";
import { BUN, CLI, MIRROR, ROOT } from "./lib.ts";
import { childrenOf } from "./proc-stat.ts";

/**
 * A real `infernet dash` in a real pseudo-terminal, for bench/dashboard.ts: a detached tmux session on
 * a server socket of its own (the user's tmux is never touched), or `script -qfc` where tmux is
 * missing. Everything the dashboard writes to the terminal is copied to a file (tmux `pipe-pane`, or
 * script's typescript), so the bench can count the bytes and frames it drew.
 */

/** Longest wait for the dashboard's process to appear and draw its first frame. */
const ATTACH_TIMEOUT_MS = 30_000;
/** Longest wait for the dashboard to quit on `q` before it is sent SIGTERM, then SIGKILL. */
const QUIT_TIMEOUT_MS = 5_000;
/**
 * DEC private mode 2026 set (begin synchronized update): Ink 8 on an interactive terminal wraps each
 * frame it writes in this and its reset, so counting it counts frames actually written. Ink has no
 * frame-count hook; a frame Ink skips because nothing changed writes nothing and is not counted.
 */
const FRAME_MARK = Buffer.from("\u001b[?2026h");

export interface DashOptions {
  /** INFERNET_HOME of the node to attach to. */
  home: string;
  /** Folder for the terminal copy and the tmux socket's name. */
  dir: string;
  columns: number;
  rows: number;
  /** Extra environment for the dashboard process. */
  env?: Record<string, string>;
  /** Use tmux when it is installed (the default); false: always `script -qfc`. */
  tmux?: boolean;
  /** Flags for Bun itself, before the CLI's path (`--preload FILE`, `--cpu-prof`). */
  bunFlags?: string[];
}

export interface PtyDash extends AsyncDisposable {
  /** The `infernet dash` process itself (the bun process, not a shell around it). */
  pid: number;
  via: "tmux" | "script";
  /** Bytes the dashboard wrote to its terminal so far. */
  bytes(): number;
  /** Frames it wrote so far (synchronized-update begin marks). */
  frames(): number;
  /** The screen as text (tmux only). */
  screen(): string | undefined;
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

function dashCommand(options: DashOptions): string {
  const env = {
    INFERNET_HOME: options.home,
    INFERNET_MODEL_MIRROR: MIRROR,
    INFERNET_MDNS: "false",
    ...options.env,
  };
  const vars = Object.entries(env).map(([k, v]) => `${k}=${quote(v)}`);
  const flags = (options.bunFlags ?? []).map(quote);
  // `exec` twice (the shell into env, env into bun): the process measured is the dashboard itself.
  return `cd ${quote(ROOT)} && exec env ${vars.join(" ")} ${quote(BUN)} ${flags.join(" ")} ${quote(CLI)} dash`;
}

/** Counts bytes and frame marks in the growing terminal copy, reading only what is new. */
class OutputCounter {
  private offset = 0;
  private marks = 0;
  private tail = Buffer.alloc(0);

  constructor(private readonly path: string) {}

  private update(): void {
    if (!existsSync(this.path)) return;
    const size = statSync(this.path).size;
    if (size <= this.offset) return;
    const chunk = Buffer.alloc(size - this.offset);
    const fd = openSync(this.path, "r");
    try {
      readSync(fd, chunk, 0, chunk.length, this.offset);
    } finally {
      closeSync(fd);
    }
    this.offset = size;
    // Keep the last few bytes so a mark split across two reads is still counted once.
    const text = Buffer.concat([this.tail, chunk]);
    for (let i = text.indexOf(FRAME_MARK); i !== -1; i = text.indexOf(FRAME_MARK, i + 1)) this.marks++;
    const keep = Math.min(FRAME_MARK.length - 1, text.length);
    // One byte short of a mark: a whole mark (counted already) never fits in the carry.
    this.tail = text.subarray(text.length - keep);
  }

  bytes(): number {
    this.update();
    return this.offset;
  }

  frames(): number {
    this.update();
    return this.marks;
  }
}

/** True once `pid` runs the Bun binary (the shell before it has exec'd into it). */
function runsBun(pid: number): boolean {
  try {
    return readlinkSync(`/proc/${pid}/exe`) === realpathSync(BUN);
  } catch {
    return false;
  }
}

async function until<T>(what: string, check: () => T | undefined | false): Promise<T> {
  const deadline = Date.now() + ATTACH_TIMEOUT_MS;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`dashboard: timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stopPid(pid: number, quit: () => void): Promise<void> {
  if (!alive(pid)) return;
  quit();
  for (const signal of [undefined, "SIGTERM", "SIGKILL"] as const) {
    if (signal) process.kill(pid, signal);
    const deadline = Date.now() + QUIT_TIMEOUT_MS;
    while (alive(pid) && Date.now() < deadline) await Bun.sleep(50);
    if (!alive(pid)) return;
  }
}

/** Starts `infernet dash` on `options.home` in a pseudo-terminal and waits for its first frame. */
export async function attachDash(options: DashOptions): Promise<PtyDash> {
  const out = join(options.dir, "dash-terminal.out");
  const counter = new OutputCounter(out);
  if (options.tmux !== false && TMUX) {
    const tmux = new Tmux();
    // The pane waits for a line before it becomes the dashboard, so the copy starts before the first frame.
    const cmd = `read _ && ${dashCommand(options)}`;
    tmux.run("new-session", "-d", "-s", "dash", "-x", String(options.columns), "-y", String(options.rows), cmd);
    const serverPid = Number(tmux.run("display", "-p", "-t", "dash", "#{pid}").trim());
    const dispose = async (pid?: number) => {
      if (pid) await stopPid(pid, () => tmux.send("dash", "q", "q"));
      tmux.kill();
      if (alive(serverPid)) process.kill(serverPid, "SIGKILL");
    };
    try {
      tmux.run("pipe-pane", "-o", "-t", "dash", `cat >> ${quote(out)}`);
      tmux.send("dash", "Enter");
      const pid = Number(tmux.run("display", "-p", "-t", "dash", "#{pane_pid}").trim());
      await until("the dashboard process", () => runsBun(pid));
      const screen = () => tmux.screen("dash");
      await until("the first frame", () => counter.frames() > 0 && screen().includes("Hardware"));
      return {
        pid,
        via: "tmux",
        bytes: () => counter.bytes(),
        frames: () => counter.frames(),
        screen,
        [Symbol.asyncDispose]: () => dispose(pid),
      };
    } catch (err) {
      await dispose();
      throw err;
    }
  }
  // `stty` sets the pseudo-terminal's size before the dashboard reads it; script copies its output to `out`.
  const cmd = `stty cols ${options.columns} rows ${options.rows} && ${dashCommand(options)}`;
  const script = Bun.spawn(["script", "-qfc", cmd, out], { stdin: "pipe", stdout: "ignore", stderr: "ignore" });
  const kill = async () => {
    script.kill("SIGKILL");
    await script.exited;
  };
  try {
    const pid = await until("the dashboard process", () => childrenOf(script.pid).find(runsBun));
    await until("the first frame", () => counter.frames() > 0);
    return {
      pid,
      via: "script",
      bytes: () => counter.bytes(),
      frames: () => counter.frames(),
      screen: () => undefined,
      [Symbol.asyncDispose]: async () => {
        await stopPid(pid, () => {
          script.stdin.write("qq");
          script.stdin.flush();
        });
        await kill();
      },
    };
  } catch (err) {
    await kill();
    throw err;
  }
}
