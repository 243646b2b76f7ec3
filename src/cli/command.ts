import type { Config, ConfigOverrides } from "../config/index.ts";
import type { Store } from "../store/db.ts";
import type { OptionSpecs, Parsed } from "./args.ts";

/** What a command gets to work with. Config and store are opened on first use. */
export interface CliContext {
  /** Flags that override the config; set them before the first call to `config()`. */
  overrides: ConfigOverrides;
  config(): Config;
  store(): Store;
  stdout: Output;
  stderr: Output;
  /** Aborted on Ctrl-C. */
  signal: AbortSignal;
}

export interface Output {
  write(text: string): void;
  readonly isTTY: boolean;
  readonly columns: number;
}

export interface Command<O extends OptionSpecs = OptionSpecs> {
  name: string;
  /** Usage line(s) after `infernet `. */
  usage: string[];
  /** Longer text and examples for `--help`. */
  details?: string;
  options: O;
  /** Returns the exit code. Throws typed errors for failures (see cli/exit.ts). */
  run(ctx: CliContext, args: Parsed<O>): Promise<number>;
}

export function defineCommand<O extends OptionSpecs>(command: Command<O>): Command<O> {
  return command;
}
