import { VERSION } from "../version.ts";
import { formatOptions } from "./args.ts";
import type { Command } from "./command.ts";
import type { CommandEntry } from "./commands.ts";

export function mainHelp(commands: CommandEntry[]): string {
  const width = Math.max(...commands.map((c) => c.name.length)) + 2;
  return [
    `infernet ${VERSION}: peer-to-peer inference`,
    "",
    "Usage: infernet <command> [options]",
    "       infernet   (on a terminal: the dashboard of the node running here, or a new node with it)",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    "",
    "Options:",
    "  -h, --help     Show help (also: infernet <command> --help)",
    "  -v, --version  Print the version",
    "",
    "Environment: INFERNET_HOME (default ~/.infernet), INFERNET_MODEL_MIRROR, INFERNET_LOG=debug;",
    "`infernet config` lists every setting.",
    "",
  ].join("\n");
}

export function commandHelp(entry: CommandEntry, command: Command): string {
  return [
    entry.summary,
    "",
    "Usage:",
    ...command.usage.map((u) => `  infernet ${u}`),
    "",
    "Options:",
    formatOptions(command.options),
    ...(command.details ? ["", command.details.trimEnd()] : []),
    "",
  ].join("\n");
}
