import { findModel } from "../models/catalog.ts";
import { type ResolvedModel, resolveLocalModel } from "../models/local.ts";
import type { RuntimeName } from "../runtime/engine.ts";
import { UsageError } from "../util/errors.ts";
import { intFlag, numberFlag } from "./args.ts";
import { defineCommand } from "./command.ts";
import { progressReporter } from "./progress.ts";
import { MAX_BATCH, MAX_TOP, RUN_ONNX_OPTIONS } from "./run-onnx-options.ts";

/** Longest prompt read from stdin. */
const MAX_STDIN_PROMPT_BYTES = 4 * 1024 * 1024;

export const runCommand = defineCommand({
  name: "run",
  usage: [
    'run <model> "<prompt>" [--max-tokens N] [--temperature T --seed S] [--stop STR]...',
    "run <model> --input <image|folder|file.idx.gz|file.npy> [--labels FILE] [--json]",
    "run <model> < prompt.txt",
  ],
  details: `<model> is a catalog name or alias (\`infernet models\`), downloaded and verified on first use, or a path
to a .gguf or .onnx file. Text goes to stdout as it is generated. Decoding is greedy unless --temperature
is above 0, so the same prompt gives the same text on any machine. With --labels, accuracy goes to
stderr (with --json, a final {"summary": ...} line).

Examples:
  infernet run stories260k "Once upon a time"
  infernet run llama3 "Why is the sky blue?" --max-tokens 200
  infernet run mnist-8 --input digit.png
  infernet run mnist-8 --input t10k-images-idx3-ubyte.gz --labels t10k-labels-idx1-ubyte.gz --json`,
  options: {
    "max-tokens": { type: "string", value: "N", description: "Most tokens to generate (default: config maxTokens)" },
    temperature: { type: "string", value: "T", description: "Sampling temperature; 0 (default) is greedy" },
    seed: { type: "string", value: "S", description: "Sampling seed (with --temperature above 0)" },
    "top-k": { type: "string", value: "K", description: "Sample from the K most likely tokens" },
    "top-p": { type: "string", value: "P", description: "Sample from the smallest set with probability P" },
    stop: { type: "string", multiple: true, value: "STR", description: "Stop before this text" },
    system: { type: "string", value: "TEXT", description: "System prompt (chat models)" },
    chat: {
      type: "boolean",
      description: "Use the model's chat template even if the catalog says it is not a chat model",
    },
    raw: { type: "boolean", description: "Do not apply a chat template; continue the prompt as given" },
    gpu: { type: "string", value: "auto|cuda|vulkan|metal|cpu", description: "Backend for language models" },
    threads: {
      type: "string",
      value: "N",
      description: "CPU threads (default: measured per language model; 1 for small ONNX models)",
    },
    json: { type: "boolean", description: "Machine-readable output" },
    verbose: { type: "boolean", description: "Print timing figures to stderr" },
    ...RUN_ONNX_OPTIONS,
  },
  async run(ctx, { values, positionals }) {
    const [modelArg, ...promptWords] = positionals;
    if (!modelArg)
      throw new UsageError("run: which model?", { hint: 'e.g. infernet run stories260k "Once upon a time"' });
    if (values.chat && values.raw) throw new UsageError("run: --chat and --raw contradict each other");
    const threads = intFlag("run", "threads", values.threads, 1, 1024);
    if (values.gpu !== undefined) ctx.overrides.gpu = values.gpu as never;
    if (threads !== undefined) ctx.overrides.threads = threads;
    const config = ctx.config();
    // Catch a mismatch between model kind and arguments before downloading anything.
    const runtime = findModel(modelArg)?.runtime ?? (modelArg.endsWith(".onnx") ? "onnx" : "llama");
    checkArguments(runtime, modelArg, promptWords.length > 0, values.input !== undefined);

    const model: ResolvedModel = await resolveLocalModel(modelArg, {
      config,
      store: ctx.store(),
      signal: ctx.signal,
      onProgress: progressReporter(ctx.stderr, modelArg),
    });

    checkArguments(model.runtime, model.name, promptWords.length > 0, values.input !== undefined);
    if (model.runtime === "onnx") {
      const { runOnnx } = await import("./run-onnx.ts");
      return runOnnx(ctx, model, {
        ...(values.input !== undefined ? { input: values.input } : {}),
        ...(values.labels !== undefined ? { labels: values.labels } : {}),
        json: Boolean(values.json),
        ...(values.top !== undefined ? { top: intFlag("run", "top", values.top, 1, MAX_TOP) } : {}),
        ...(values.batch !== undefined ? { batch: intFlag("run", "batch", values.batch, 1, MAX_BATCH) } : {}),
      });
    }

    const prompt = promptWords.length ? promptWords.join(" ") : await readStdinPrompt();
    const temperature = numberFlag("run", "temperature", values.temperature, 0, 10);
    const seed = intFlag("run", "seed", values.seed, 0, 2 ** 32 - 1);
    const topK = intFlag("run", "top-k", values["top-k"], 1, 100_000);
    const topP = numberFlag("run", "top-p", values["top-p"], 0, 1);
    const { runLlama } = await import("./run-llama.ts");
    return runLlama(ctx, model, {
      json: Boolean(values.json),
      verbose: Boolean(values.verbose),
      request: {
        prompt,
        ...(values.chat ? { chat: true } : values.raw ? { chat: false } : {}),
        ...(values.system !== undefined ? { system: values.system } : {}),
        ...(values["max-tokens"] !== undefined
          ? { maxTokens: intFlag("run", "max-tokens", values["max-tokens"], 1, 1_000_000) }
          : {}),
        ...(temperature !== undefined ? { temperature } : {}),
        ...(seed !== undefined ? { seed } : {}),
        ...(topK !== undefined ? { topK } : {}),
        ...(topP !== undefined ? { topP } : {}),
        ...(values.stop?.length ? { stop: values.stop } : {}),
      },
    });
  },
});

function checkArguments(runtime: RuntimeName, model: string, prompt: boolean, input: boolean): void {
  if (runtime === "onnx" && prompt) {
    throw new UsageError(`run: ${model} is an ONNX model; it takes --input, not a prompt`);
  }
  if (runtime === "llama" && input) {
    throw new UsageError(`run: ${model} is a language model; give a prompt instead of --input`);
  }
}

async function readStdinPrompt(): Promise<string> {
  if (process.stdin.isTTY) {
    throw new UsageError("run: no prompt given", {
      hint: 'put it after the model name, e.g. infernet run stories260k "Once upon a time"',
    });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > MAX_STDIN_PROMPT_BYTES) {
      throw new UsageError(`run: the prompt on stdin is over ${MAX_STDIN_PROMPT_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}
