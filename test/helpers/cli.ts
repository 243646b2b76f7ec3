import { join } from "node:path";
import { ROOT, SHARED_MODELS } from "./paths.ts";

export const BUN = join(ROOT, "node_modules/.bin/bun");
export const CLI = join(ROOT, "src/index.ts");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** INFERNET_HOME for the run (required: tests never touch ~/.infernet). */
  home: string;
  /**
   * Extra environment, applied last. INFERNET_MODEL_MIRROR defaults to the shared models folder and
   * mDNS is off (a test never looks for peers on the LAN; network tests name their bootstrap).
   */
  env?: Record<string, string>;
  stdin?: string;
}

/** Starts the real CLI in a child process with its own INFERNET_HOME; read it with `finish`. */
export function spawnInfernet(args: string[], options: CliOptions) {
  return Bun.spawn([BUN, CLI, ...args], {
    env: {
      ...process.env,
      INFERNET_MODEL_MIRROR: SHARED_MODELS,
      INFERNET_HOME: options.home,
      INFERNET_LOG: "info",
      INFERNET_MDNS: "false",
      ...options.env,
    },
    stdin: options.stdin === undefined ? "ignore" : new Blob([options.stdin]),
    stdout: "pipe",
    stderr: "pipe",
  });
}

/** Waits for a child to exit and collects its output. */
export async function finish(proc: ReturnType<typeof spawnInfernet>): Promise<CliResult> {
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** Runs the real CLI to completion. */
export function infernet(args: string[], options: CliOptions): Promise<CliResult> {
  return finish(spawnInfernet(args, options));
}
