import { ensureFile, isDownloaded } from "../models/cache.ts";
import { type CatalogEntry, findModel, modelFile } from "../models/catalog.ts";
import { looksLikePath, type ResolvedModel, resolveLocalModel } from "../models/local.ts";
import { formatMsat, type Msat } from "../payments/amount.ts";
import type { Engine, GenerateRequest, RuntimeName } from "../runtime/engine.ts";
import { NoProviderError, UsageError } from "../util/errors.ts";
import { amountFlag, intFlag, MAX_AMOUNT_FLAG_MSAT, numberFlag, type OptionSpecs, type ParsedValues } from "./args.ts";
import { type CliContext, defineCommand } from "./command.ts";
import { networkAccess, networkEngine } from "./network.ts";
import { applyNetworkOptions, NETWORK_OPTIONS } from "./network-options.ts";
import { progressReporter } from "./progress.ts";
import { MAX_BATCH, MAX_TOP, RUN_ONNX_OPTIONS } from "./run-onnx-options.ts";

/** Longest prompt read from stdin. */
const MAX_STDIN_PROMPT_BYTES = 4 * 1024 * 1024;

const RUN_OPTIONS = {
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
  verbose: { type: "boolean", description: "Print timing figures (and which provider served) to stderr" },
  local: { type: "boolean", description: "Run on this machine (download the model if needed)" },
  remote: { type: "boolean", description: "Run on the network even if the model is on this machine" },
  deadline: { type: "string", value: "SECONDS", description: "Give up (exit 124) if not done by then" },
  "max-price": {
    type: "string",
    value: "AMOUNT",
    description:
      "Most this request may cost (50sat, 1500msat; a bare number is sats): a provider that charges is paid as the answer streams, over your channel to it",
  },
  ...NETWORK_OPTIONS,
  ...RUN_ONNX_OPTIONS,
} as const satisfies OptionSpecs;

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
  infernet run stories260k "Once upon a time" --max-price 50sat   # pays a provider that charges
  infernet run mnist-8 --input digit.png
  infernet run mnist-8 --input t10k-images-idx3-ubyte.gz --labels t10k-labels-idx1-ubyte.gz --json`,
  options: RUN_OPTIONS,
  async run(outer, { values, positionals }) {
    const [modelArg, ...promptWords] = positionals;
    const deadline = numberFlag("run", "deadline", values.deadline, 0.001, 7 * 24 * 3600);
    const ctx: CliContext =
      deadline === undefined
        ? outer
        : { ...outer, signal: AbortSignal.any([outer.signal, AbortSignal.timeout(Math.ceil(deadline * 1000))]) };
    if (!modelArg)
      throw new UsageError("run: which model?", { hint: 'e.g. infernet run stories260k "Once upon a time"' });
    if (values.chat && values.raw) throw new UsageError("run: --chat and --raw contradict each other");
    const threads = intFlag("run", "threads", values.threads, 1, 1024);
    if (values.gpu !== undefined) ctx.overrides.gpu = values.gpu as never;
    if (threads !== undefined) ctx.overrides.threads = threads;
    if (values.local && values.remote) throw new UsageError("run: --local and --remote contradict each other");
    applyNetworkOptions(ctx, values);
    const config = ctx.config();
    // Catch a mismatch between model kind and arguments before downloading anything.
    const runtime = findModel(modelArg)?.runtime ?? (modelArg.endsWith(".onnx") ? "onnx" : "llama");
    checkArguments(runtime, modelArg, promptWords.length > 0, values.input !== undefined);
    const request = runtime === "llama" ? await generateRequest(values, promptWords) : undefined;
    const maxPriceMsat = amountFlag("run", "max-price", values["max-price"], "sat", MAX_AMOUNT_FLAG_MSAT);

    const onnxOptions = {
      ...(values.input !== undefined ? { input: values.input } : {}),
      ...(values.labels !== undefined ? { labels: values.labels } : {}),
      json: Boolean(values.json),
      ...(values.top !== undefined ? { top: intFlag("run", "top", values.top, 1, MAX_TOP) } : {}),
      ...(values.batch !== undefined ? { batch: intFlag("run", "batch", values.batch, 1, MAX_BATCH) } : {}),
    };

    // A catalog model not on this machine runs on the network (--remote: even if it is here).
    const entry = looksLikePath(modelArg) ? undefined : findModel(modelArg);
    if (entry && !values.local && (values.remote || !isDownloaded(config, ctx.store(), entry))) {
      const options = { verbose: Boolean(values.verbose), remoteOnly: Boolean(values.remote), maxPriceMsat };
      const ran = await runRemotely(ctx, entry, options, async (model, engine) => {
        if (request)
          return (await import("./run-llama.ts")).runLlama(
            ctx,
            model,
            { json: Boolean(values.json), verbose: Boolean(values.verbose), request },
            engine,
          );
        return (await import("./run-onnx.ts")).runOnnx(ctx, model, onnxOptions, engine);
      });
      if (ran !== undefined) return ran;
    }

    const model: ResolvedModel = await resolveLocalModel(modelArg, {
      config,
      store: ctx.store(),
      signal: ctx.signal,
      onProgress: progressReporter(ctx.stderr, modelArg),
    });

    checkArguments(model.runtime, model.name, promptWords.length > 0, values.input !== undefined);
    if (model.runtime === "onnx") {
      const { runOnnx } = await import("./run-onnx.ts");
      return runOnnx(ctx, model, onnxOptions);
    }

    const { runLlama } = await import("./run-llama.ts");
    return runLlama(ctx, model, { json: Boolean(values.json), verbose: Boolean(values.verbose), request: request! });
  },
});

type RunValues = ParsedValues<typeof RUN_OPTIONS>;

/** The generation request the flags describe (prompt from the arguments or stdin). */
async function generateRequest(values: RunValues, promptWords: string[]): Promise<Omit<GenerateRequest, "kind">> {
  const prompt = promptWords.length ? promptWords.join(" ") : await readStdinPrompt();
  const temperature = numberFlag("run", "temperature", values.temperature, 0, 10);
  const seed = intFlag("run", "seed", values.seed, 0, 2 ** 32 - 1);
  const topK = intFlag("run", "top-k", values["top-k"], 1, 100_000);
  const topP = numberFlag("run", "top-p", values["top-p"], 0, 1);
  const maxTokens = intFlag("run", "max-tokens", values["max-tokens"], 1, 1_000_000);
  return {
    prompt,
    ...(values.chat ? { chat: true } : values.raw ? { chat: false } : {}),
    ...(values.system !== undefined ? { system: values.system } : {}),
    ...(maxTokens !== undefined ? { maxTokens } : {}),
    ...(temperature !== undefined ? { temperature } : {}),
    ...(seed !== undefined ? { seed } : {}),
    ...(topK !== undefined ? { topK } : {}),
    ...(topP !== undefined ? { topP } : {}),
    ...(values.stop?.length ? { stop: values.stop } : {}),
  };
}

/**
 * Runs a catalog model on the network, through the running node or an ephemeral one. Returns undefined
 * when no provider could take it before any output (so the caller may run it here instead).
 */
async function runRemotely(
  ctx: CliContext,
  entry: CatalogEntry,
  options: { verbose: boolean; remoteOnly: boolean; maxPriceMsat: Msat | undefined },
  run: (model: ResolvedModel, engine: Engine) => Promise<number>,
): Promise<number | undefined> {
  await using access = await networkAccess(ctx, { payments: options.maxPriceMsat !== undefined });
  if (!access) {
    if (options.remoteOnly) {
      throw new NoProviderError("not connected to any peer", {
        hint: "start a node (`infernet start`) or give --bootstrap <multiaddr>",
      });
    }
    return undefined;
  }
  const engine = networkEngine(access, entry.runtime, {
    ...(options.maxPriceMsat !== undefined ? { maxPriceMsat: options.maxPriceMsat } : {}),
    onPaid: (peerId, paid) =>
      ctx.stderr.write(`infernet: paid ${formatMsat(paid)} to provider ${peerId} over your channel\n`),
    onProvider: (peerId, attempt, resumedAt) => {
      if (options.verbose || attempt > 1) {
        const how = attempt > 1 ? `continuing after ${resumedAt} tokens on` : "running on";
        ctx.stderr.write(`infernet: ${how} provider ${peerId} (via ${access.via} node)\n`);
      }
    },
  });
  const model: ResolvedModel = {
    name: entry.name,
    runtime: entry.runtime,
    path: "",
    sha256: modelFile(entry).sha256,
    chat: entry.chat,
    entry,
    ...(await companionFiles(ctx, entry)),
  };
  try {
    return await run(model, engine);
  } catch (err) {
    if (err instanceof NoProviderError && !options.remoteOnly && !engine.outputSeen()) {
      ctx.stderr.write(`infernet: ${err.message}; running it here\n`);
      return undefined;
    }
    throw err;
  }
}

/** A remote classifier still needs its class names here: fetch the (small) companion files, not the model. */
async function companionFiles(ctx: CliContext, entry: CatalogEntry): Promise<{ extras?: Record<string, string> }> {
  const extras: Record<string, string> = {};
  for (const file of entry.files.filter((f) => f.role !== "model")) {
    const got = await ensureFile(entry, file, {
      config: ctx.config(),
      store: ctx.store(),
      signal: ctx.signal,
      onProgress: progressReporter(ctx.stderr, entry.name),
    });
    extras[file.role] = got.path;
  }
  return Object.keys(extras).length ? { extras } : {};
}

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
