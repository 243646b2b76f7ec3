import { render } from "ink";
import { createElement } from "react";
import { App, type DashboardSource } from "./app.tsx";

/**
 * The dashboard's entry: renders the app on this terminal and gives the terminal back as it found
 * it. Only the dashboard's paths (`infernet dash`, `infernet start` on a terminal) import this module,
 * and only lazily, so nothing headless loads React.
 */

/** Most frames a second Ink draws, however fast snapshots and keys arrive (idle CPU, no flicker). */
export const RENDER_MAX_FPS = 10;

/** DEC private mode 25: show the cursor (Ink hides it while drawing). Written on every exit path. */
const SHOW_CURSOR = "\u001b[?25h";

export interface RunDashboardOptions {
  /** NO_COLOR is set. */
  mono: boolean;
  /** This process runs the node (`infernet start`): `q` drains its work before leaving. */
  owner: boolean;
  /** Aborted on SIGINT/SIGTERM: the dashboard closes as if `q` had been pressed twice. */
  signal: AbortSignal;
}

/** Runs the dashboard until the user quits (or `signal` aborts). */
export async function runDashboard(source: DashboardSource, options: RunDashboardOptions): Promise<void> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  const instance = render(createElement(App, { source, mono: options.mono, owner: options.owner }), {
    maxFps: RENDER_MAX_FPS,
    // The alternate screen keeps the user's scrollback as it was: the dashboard leaves no trace.
    alternateScreen: true,
    // `infernet dash` runs only on a terminal: a CI variable in the user's environment (which makes
    // Ink print just a final frame) must not leave the screen blank.
    interactive: true,
    exitOnCtrlC: true,
    patchConsole: true,
  });
  const onAbort = () => instance.unmount();
  options.signal.addEventListener("abort", onAbort, { once: true });
  try {
    await instance.waitUntilExit();
  } finally {
    options.signal.removeEventListener("abort", onAbort);
    instance.cleanup();
    // Ink restores these on a clean unmount; a throw inside React is not one, so do it again here.
    if (stdin.isTTY && stdin.isRaw) stdin.setRawMode(false);
    stdin.pause();
    if (stdout.isTTY) stdout.write(SHOW_CURSOR);
  }
}
