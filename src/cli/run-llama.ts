import type { ResolvedModel } from "../models/local.ts";
import type { Engine, GenerateRequest, Usage } from "../runtime/engine.ts";
import type { LlamaEngine } from "../runtime/llama/engine.ts";
import type { CliContext } from "./command.ts";
import { llamaEngineFor } from "./llama.ts";

export interface RunLlamaOptions {
  request: Omit<GenerateRequest, "kind">;
  json: boolean;
  /** Print timing figures to stderr at the end. */
  verbose: boolean;
}

/** Streams generated text to stdout as it is produced (or one JSON object at the end with --json). */
export async function runLlama(
  ctx: CliContext,
  model: ResolvedModel,
  options: RunLlamaOptions,
  remote?: Engine,
): Promise<number> {
  await using engine = remote ?? (await llamaEngineFor(ctx));
  let text = "";
  let usage: Usage | undefined;
  let finishReason = "";
  for await (const event of engine.run(model, { kind: "generate", ...options.request }, { signal: ctx.signal })) {
    if (event.type === "token") {
      text += event.text;
      if (!options.json) ctx.stdout.write(event.text);
    } else if (event.type === "done") {
      usage = event.usage;
      finishReason = event.finishReason;
    }
  }
  const tokensPerSecond = usage && usage.computeMs > 0 ? (usage.outputTokens * 1000) / usage.computeMs : 0;
  if (options.json) {
    ctx.stdout.write(
      `${JSON.stringify({ model: model.name, sha256: model.sha256, text, finishReason, usage, tokensPerSecond })}\n`,
    );
  } else {
    ctx.stdout.write("\n");
  }
  if (options.verbose && usage) {
    ctx.stderr.write(
      `${usage.outputTokens} tokens in ${(usage.computeMs / 1000).toFixed(2)} s (${tokensPerSecond.toFixed(0)} tokens/s), ` +
        `first token after ${usage.firstOutputMs.toFixed(0)} ms, prompt ${usage.inputTokens} tokens, ` +
        `${remote ? "on the network" : `backend ${await (engine as LlamaEngine).backend()}`}, stopped by ${finishReason}\n`,
    );
  }
  return 0;
}
