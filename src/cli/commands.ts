import type { Command } from "./command.ts";
import { configCommand } from "./config.ts";
import { gpuCommand } from "./gpu.ts";
import { modelsCommand } from "./models.ts";
import { pullCommand } from "./pull.ts";
import { runCommand } from "./run.ts";

/** Every command, in the order `infernet --help` lists them. */
// biome-ignore lint/suspicious/noExplicitAny: commands differ in their option types
export const COMMANDS: Command<any>[] = [runCommand, pullCommand, modelsCommand, gpuCommand, configCommand];
