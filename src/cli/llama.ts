import { configuredLlamaEngine } from "../node/engines.ts";
import type { LlamaEngine } from "../runtime/llama/engine.ts";
import type { CliContext } from "./command.ts";

/** The llama engine as configured for this process (flags > env > config file). */
export function llamaEngineFor(ctx: CliContext): Promise<LlamaEngine> {
  return configuredLlamaEngine(ctx.config(), ctx.store(), ctx.signal);
}
