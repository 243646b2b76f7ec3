/**
 * A real pseudo-terminal for end-to-end tests of the dashboard: a tmux server on its own socket (so
 * a user's tmux is never touched), sessions running a plain `sh` that outlives what runs in it, keys
 * sent with `send-keys` and the screen read back with `capture-pane`.
 */

/** Where tmux is, if it is installed (tests skip without it). */
export const TMUX = Bun.which("tmux");
/** CI sets this: there, a missing tmux is a failure, not skipped terminal tests. */
export const REQUIRE_TMUX = process.env.INFERNET_REQUIRE_TMUX === "1";
/** Longest wait for a screen; past it the test fails showing the screen it saw last. */
export const SCREEN_WAIT_MS = 60_000;

/** The pane's terminal state after a program left it: the alternate screen, the cursor, raw mode. */
export interface TerminalState {
  alternateScreen: boolean;
  cursorShown: boolean;
  paneAlive: boolean;
  /** `stty` reports canonical input and echo on, as a shell needs them (raw mode turns both off). */
  cooked: boolean;
}

export class Tmux {
  private readonly socket = `infernet-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

  /** Runs a tmux command on this server; its stdout. */
  run(...args: string[]): string {
    // -u: UTF-8 whatever the locale (a bare CI environment has none), so bars and arrows read back as drawn.
    const r = Bun.spawnSync([TMUX ?? "tmux", "-u", "-L", this.socket, ...args], { stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`tmux ${args[0]}: ${r.stderr.toString()}`);
    return r.stdout.toString();
  }

  /** A detached session of this size running `sh`. */
  session(name: string, columns: number, rows: number): void {
    this.run("new-session", "-d", "-s", name, "-x", String(columns), "-y", String(rows), "sh");
  }

  /** Types `keys` (tmux key names: "Enter", "Tab", "Escape", or text). */
  send(session: string, ...keys: string[]): void {
    this.run("send-keys", "-t", session, ...keys);
  }

  /** Runs a shell command line in the pane, then prints `mark` followed by its exit code. */
  command(session: string, line: string, mark: string): void {
    this.send(session, `${line}; echo ${mark}$?`, "Enter");
  }

  screen(session: string): string {
    return this.run("capture-pane", "-p", "-t", session);
  }

  /** Waits until the pane shows what `check` wants; the screen then. */
  async until(session: string, check: (screen: string) => boolean): Promise<string> {
    const deadline = Date.now() + SCREEN_WAIT_MS;
    for (;;) {
      const s = this.screen(session);
      if (check(s)) return s;
      if (Date.now() > deadline) throw new Error(`the screen never showed what was expected; it shows:\n${s}`);
      await Bun.sleep(50);
    }
  }

  /** Waits for `mark` followed by a digit (the typed command line holds the mark too, before `$?`). */
  async exited(session: string, mark: string): Promise<string> {
    return this.until(session, (s) => new RegExp(`${mark}\\d`).test(s));
  }

  /** What the program that just returned to the shell left the terminal like. */
  async terminalState(session: string): Promise<TerminalState> {
    const [alternate, cursor, dead] = this.run(
      "display",
      "-p",
      "-t",
      session,
      "#{alternate_on} #{cursor_flag} #{pane_dead}",
    )
      .trim()
      .split(" ");
    this.send(session, "clear; stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo -e -icanon -e -echo", "Enter");
    const modes = await this.until(session, (s) => /^-?icanon$/m.test(s) && /^-?echo$/m.test(s));
    return {
      alternateScreen: alternate === "1",
      cursorShown: cursor === "1",
      paneAlive: dead === "0",
      cooked: /^icanon$/m.test(modes) && /^echo$/m.test(modes),
    };
  }

  kill(): void {
    if (TMUX) Bun.spawnSync([TMUX, "-L", this.socket, "kill-server"], { stderr: "ignore" });
  }
}

/** A sane terminal, as a shell needs it after the dashboard left. */
export const SANE: TerminalState = { alternateScreen: false, cursorShown: true, paneAlive: true, cooked: true };
