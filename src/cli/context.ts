import { join } from "node:path";
import { type Config, loadConfig } from "../config/index.ts";
import { Store } from "../store/db.ts";
import { configureLogging } from "../util/logger.ts";
import type { CliContext, Output } from "./command.ts";

function output(stream: NodeJS.WriteStream): Output {
  return {
    write: (text) => void stream.write(text),
    get isTTY() {
      return Boolean(stream.isTTY);
    },
    get columns() {
      return stream.columns || 80;
    },
  };
}

export interface ProcessContext extends CliContext, Disposable {}

/** The context for a real process: stdio, Ctrl-C, lazy config/logging/store. */
export function processContext(signal: AbortSignal): ProcessContext {
  let config: Config | undefined;
  let store: Store | undefined;
  const ctx: ProcessContext = {
    overrides: {},
    stdout: output(process.stdout),
    stderr: output(process.stderr),
    signal,
    config() {
      if (!config) {
        config = loadConfig({ overrides: ctx.overrides });
        configureLogging({ level: config.log, dir: join(config.home, "logs") });
      }
      return config;
    },
    store() {
      store ??= Store.open(ctx.config().home);
      return store;
    },
    [Symbol.dispose]() {
      store?.close();
      store = undefined;
    },
  };
  return ctx;
}
