#!/usr/bin/env bun
/**
 * Entry point: routes the command, owns the global error handler and the exit code.
 * Everything a user can get wrong is turned into one line by cli/exit.ts.
 */
import { parse } from "./cli/args.ts";
import { COMMANDS, type CommandEntry } from "./cli/commands.ts";
import { describeError, EXIT, exitCodeFor } from "./cli/exit.ts";
import { commandHelp, mainHelp } from "./cli/help.ts";
import { environment } from "./config/env.ts";
import { AbortedError, UsageError } from "./util/errors.ts";
import { closeLogging, logger } from "./util/logger.ts";
import { VERSION } from "./version.ts";

const log = logger("cli");

/** `infernet` alone on a terminal: the dashboard (cli/home.ts); it is not listed among the commands. */
const HOME: CommandEntry = {
  name: "",
  summary: "The dashboard of the node running here, or a node started with its dashboard",
  load: async () => (await import("./cli/home.ts")).homeCommand,
};

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  const onTerminal = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  if ((first === undefined && !onTerminal) || first === "--help" || first === "-h" || first === "help") {
    const topic = first === "help" ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    process.stdout.write(topic ? commandHelp(topic, await topic.load()) : mainHelp(COMMANDS));
    return EXIT.ok;
  }
  if (first === "--version" || first === "-v" || first === "version") {
    process.stdout.write(`infernet ${VERSION}\n`);
    return EXIT.ok;
  }
  const entry = first === undefined ? HOME : COMMANDS.find((c) => c.name === first);
  if (!entry) {
    throw new UsageError(first?.startsWith("-") ? `unknown option "${first}"` : `unknown command "${first}"`, {
      hint: `commands: ${COMMANDS.map((c) => c.name).join(", ")}; see \`infernet --help\``,
    });
  }
  const command = await entry.load();
  const args = parse(command.name, command.options, rest);
  if (args.values.help) {
    process.stdout.write(commandHelp(entry, command));
    return EXIT.ok;
  }

  const controller = new AbortController();
  let interrupts = 0;
  const onInterrupt = () => {
    interrupts += 1;
    if (interrupts > 1) process.exit(EXIT.interrupted);
    controller.abort(new AbortedError("interrupted"));
  };
  process.on("SIGINT", onInterrupt);
  process.on("SIGTERM", onInterrupt);
  const { processContext } = await import("./cli/context.ts");
  using ctx = processContext(controller.signal);
  try {
    return await command.run(ctx, args);
  } finally {
    process.off("SIGINT", onInterrupt);
    process.off("SIGTERM", onInterrupt);
  }
}

/** Longest wait for stdout and stderr to drain before exiting (a reader that stopped reading). */
const FLUSH_TIMEOUT_MS = 10_000;

const debug = environment().INFERNET_LOG === "debug";
let code: number;
try {
  code = await main(process.argv.slice(2));
} catch (err) {
  log.error("command failed", { err });
  process.stderr.write(`${describeError(err, debug)}\n`);
  code = exitCodeFor(err);
}
closeLogging();
// Output written to a pipe is flushed asynchronously: a large `--json` report would be cut off by
// exiting at once. Wait until stdout and stderr have written everything (or a reader went away).
await Promise.race([Promise.all([flushed(process.stdout), flushed(process.stderr)]), Bun.sleep(FLUSH_TIMEOUT_MS)]);
// Native runtimes can hold the event loop open; the command is done, so leave now.
process.exit(code);

/** Resolves once everything written to `stream` is out; ending it is what waits for that in Bun. */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    stream.end(() => resolve());
  });
}
