import { basename } from "node:path";
import type { PromptRecord, Shard } from "../jobs/records.ts";
import { DEFAULT_REDUNDANCY, type JobSpec, MAX_REDUNDANCY } from "../jobs/spec.ts";
import { type Splitter, splitImages, splitPrompts } from "../jobs/split.ts";
import { SubmittedJobs } from "../jobs/submitted-jobs.ts";
import { modelFile } from "../models/catalog.ts";
import type { JobQuote } from "../node/aggregator/api.ts";
import type { AggregatorChoice, AggregatorRef } from "../node/control/jobs-ops.ts";
import { formatMsat, msat } from "../payments/amount.ts";
import { SqliteEscrowStore } from "../payments/lightning/escrow-store.ts";
import { LightningRail } from "../payments/lightning/lightning-rail.ts";
import { paymentsSetup } from "../payments/setup.ts";
import { detectFormat } from "../runtime/onnx/inputs/source.ts";
import { errorMessage, NoProviderError, RuntimeError, UsageError } from "../util/errors.ts";
import { amountFlag, intFlag, type OptionSpecs } from "./args.ts";
import { type CliContext, defineCommand } from "./command.ts";
import { jobAccess, parseAggregator } from "./job-access.ts";
import { type JobRequest, MAX_PRICE_MSAT, readJobFile, resolveSettings, type SubmitSettings } from "./job-file.ts";
import { defaultIdempotencyKey } from "./job-key.ts";
import { clearPendingSubmit, pendingSubmit, savePendingSubmit } from "./job-pending.ts";
import { aggregatorOf, followAndFetch, jsonLine } from "./job-run.ts";
import { applyNetworkOptions, NETWORK_OPTIONS } from "./network-options.ts";
import { formatBytes } from "./progress.ts";

const SUBMIT_OPTIONS = {
  model: { type: "string", value: "NAME", description: "Catalog model (`infernet models`)" },
  inputs: {
    type: "string",
    value: "FILE|DIR",
    description: "Images: a folder, an IDX file (.gz or raw) or a .npy array",
  },
  prompts: { type: "string", value: "FILE", description: 'Prompts, one JSON object per line: {"prompt": "..."}' },
  "shard-size": { type: "string", value: "N", description: "Records per shard (default 500)" },
  shards: { type: "string", value: "N", description: "Or a number of shards" },
  redundancy: { type: "string", value: "N", description: "Copies of each shard, on different providers (default 2)" },
  "min-verification": {
    type: "string",
    value: "N",
    description: "Fewest copies of any shard, however trusted its providers (default 1: canaries only)",
  },
  "max-tokens": { type: "string", value: "N", description: "Tokens per prompt that does not set its own maxTokens" },
  "max-price": {
    type: "string",
    value: "AMOUNT",
    description: "Most the whole job may cost: 5000sat, 1500msat, or a bare number of msat (default 10,000 sats)",
  },
  pay: {
    type: "string",
    value: "HOW",
    description:
      "credit (default: from your deposit at the aggregator) or lightning (a hold invoice for --max-price paid from your LND, INFERNET_LND_URL: settled when the job ends, cancelled if it paid nothing)",
  },
  quote: {
    type: "boolean",
    description: "Print the aggregator's quote and exit: nothing is uploaded or locked",
  },
  deadline: { type: "string", value: "DURATION", description: "Give up after this long, e.g. 30m (default 1h)" },
  aggregator: {
    type: "string",
    value: "PEER|MULTIADDR",
    description: "Aggregator to use (default: the cheapest found)",
  },
  output: { type: "string", value: "PATH", description: "Result file (default <input>.results.jsonl here)" },
  key: {
    type: "string",
    value: "KEY",
    description: "Idempotency key (default: from the model, input content and options)",
  },
  detach: {
    type: "boolean",
    description: "Print the job id once uploaded and exit; follow with `infernet job <id> --wait`",
  },
  json: { type: "boolean", description: "Machine-readable lines on stdout" },
  ...NETWORK_OPTIONS,
} as const satisfies OptionSpecs;

export const submitCommand = defineCommand({
  name: "submit",
  usage: [
    "submit job.json [--detach] [--json]",
    "submit --model mnist-8 --inputs FILE_OR_DIR [--shard-size N | --shards N] [--redundancy N]",
    "submit --model stories260k --prompts prompts.jsonl --max-tokens 64",
    "submit job.json --max-price 5000sat --quote",
  ],
  details: `Splits the input here, asks an aggregator for a quote (what the job should cost at its providers'
prices plus its fee, and what it locks from your credit there: --max-price), prints it, uploads the
shards (\`--quote\` stops before this: nothing is uploaded or locked), draws one cell per shard while
providers compute them (· queued, ▸ running, ▪ returned, ✓ verified, × failed), then writes the merged
result (JSONL, one line per record, in input order) and prints the providers, retries, time and cost.
Ctrl-C stops following; the job keeps running (\`infernet job <id> --wait\` picks it up). Running the same
submit again finds the same job (the idempotency key comes from the input's content) instead of paying twice.

A job file is JSON; paths in it are relative to the file, and flags override it:
  {"model": "mnist-8", "inputs": "t10k-images-idx3-ubyte.gz", "shardSize": 500, "redundancy": 2,
   "maxPriceMsat": 5000000, "deadline": "30m", "aggregator": "12D3KooW...", "output": "labels.jsonl"}
  ("prompts" instead of "inputs" for language models, with "maxTokens"; "shards" instead of "shardSize")

Examples:
  infernet submit --model mnist-8 --inputs t10k-images-idx3-ubyte.gz --shard-size 500 --redundancy 2
  infernet submit --model stories260k --prompts prompts.jsonl --max-tokens 64 --detach`,
  options: SUBMIT_OPTIONS,
  async run(ctx, { values, positionals }) {
    if (positionals.length > 1) throw new UsageError(`submit: unexpected argument "${positionals[1]}"`);
    if (values["shard-size"] !== undefined && values.shards !== undefined) {
      throw new UsageError("submit: give --shard-size or --shards, not both");
    }
    const flags: JobRequest = {
      model: values.model,
      inputs: values.inputs,
      prompts: values.prompts,
      shardSize: intFlag("submit", "shard-size", values["shard-size"], 1, Number.MAX_SAFE_INTEGER),
      shards: intFlag("submit", "shards", values.shards, 1, 100_000),
      redundancy: intFlag("submit", "redundancy", values.redundancy, 1, MAX_REDUNDANCY),
      minVerification: intFlag("submit", "min-verification", values["min-verification"], 1, MAX_REDUNDANCY),
      maxTokens: intFlag("submit", "max-tokens", values["max-tokens"], 1, 1_000_000),
      maxPriceMsat: maxPriceFlag(values["max-price"]),
      deadline: values.deadline,
      aggregator: values.aggregator,
      output: values.output,
      key: values.key,
    };
    applyNetworkOptions(ctx, values);
    const pay = payFlag(ctx, values.pay);
    const file = positionals[0] !== undefined ? await readJobFile(positionals[0]) : {};
    const settings = await resolveSettings(file, flags, process.cwd());
    const preferred = settings.aggregator !== undefined ? parseAggregator(settings.aggregator) : undefined;
    await using splitter = await openSplitter(settings, ctx.signal);
    const key = settings.key ?? (await defaultIdempotencyKey(settings, ctx.signal));
    const json = Boolean(values.json);

    const submitted = new SubmittedJobs(ctx.store());
    const earlier = submitted.byKey(key);
    if (earlier?.state === "failed") {
      throw new RuntimeError(
        `this job was submitted before as ${earlier.jobId} and failed: ${earlier.error ?? "no reason given"}`,
        {
          hint: "change an option, or give --key to submit it again",
        },
      );
    }
    const known = [...(earlier ? [aggregatorOf(earlier)] : []), ...(preferred ? [preferred] : [])];
    await using access = await jobAccess(ctx, known);
    if (earlier) {
      // A re-run (after a crash, say): the aggregator already holds this job; follow it, pay nothing twice.
      const job = submitted.record({ ...earlier, outputPath: settings.output });
      if (json) jsonLine(ctx, { event: "submitted", jobId: job.jobId, aggregator: job.aggregator, created: false });
      else ctx.stderr.write(`job ${job.jobId} was submitted before (same input and options); following it\n`);
      if (values.detach) return detached(ctx, job.jobId, json);
      return await followAndFetch(ctx, access, job, { json });
    }

    const home = ctx.config().home;
    const pending = await pendingSubmit(home, key);
    const aggregator = pending?.aggregator ?? preferred ?? cheapest(await access.findAggregators(ctx.signal));
    const { plan, kind } = splitter;
    const spec: JobSpec = pending?.spec ?? {
      model: { name: settings.model.name, sha256: modelFile(settings.model).sha256 },
      input: await inputRef(settings.input),
      ...(settings.shardSize !== undefined ? { shardSize: settings.shardSize } : {}),
      ...(settings.shardCount !== undefined ? { shardCount: settings.shardCount } : {}),
      redundancy: settings.redundancy ?? DEFAULT_REDUNDANCY,
      ...(settings.minVerification !== undefined ? { minVerification: settings.minVerification } : {}),
      maxPriceMsat: settings.maxPriceMsat,
      deadlineMs: Date.now() + settings.deadlineMs,
      ...(preferred ? { preferredAggregator: preferred.peerId } : {}),
      idempotencyKey: key,
      ...(settings.maxTokens !== undefined ? { params: { maxTokens: settings.maxTokens } } : {}),
    };
    const header = { spec, plan, kind, ...(pay ? { pay } : {}) };
    let paying: Promise<HoldOutcome> | undefined;
    if (!pending) {
      // A pending upload may already be held (and its escrow locked), so only a new job is quoted:
      // the aggregator checks price, deadline and credit before a single shard leaves this machine.
      const quote = await access.quote(aggregator, header, ctx.signal);
      printQuote(ctx, quote, aggregator.peerId, json);
      if (values.quote) return 0;
      await savePendingSubmit(home, { spec, aggregator });
      if (pay) paying = payHold(ctx, quote, json);
    } else if (values.quote) {
      throw new UsageError("submit --quote: this job's upload was interrupted and is resumed instead", {
        hint: "run submit without --quote to finish it, or give --key to quote a new job",
      });
    }
    const upload = uploadProgress(ctx, plan.shardCount, json);
    const result = await access.submit(
      aggregator,
      header,
      withMaxTokens(splitter.shards(ctx.signal), settings.maxTokens),
      { signal: ctx.signal, onUploaded: upload },
    );
    const job = submitted.record({
      jobId: result.jobId,
      aggregator: aggregator.peerId,
      aggregatorAddrs: aggregator.addrs,
      idempotencyKey: key,
      model: settings.model.name,
      records: plan.records,
      shardCount: plan.shardCount,
      outputPath: settings.output,
    });
    await clearPendingSubmit(home, key);
    if (json)
      jsonLine(ctx, { event: "submitted", jobId: job.jobId, aggregator: job.aggregator, created: result.created });
    else {
      const what = result.created ? "submitted to" : "already held by";
      ctx.stderr.write(
        `\r\x1b[Kjob ${job.jobId} ${what} aggregator ${job.aggregator} (${plan.records} records in ${plan.shardCount} shards)\n`,
      );
    }
    if (values.detach) return detached(ctx, job.jobId, json);
    const code = await followAndFetch(ctx, access, job, { json });
    if (paying) await reportHold(ctx, paying, json);
    return code;
  },
});

/** How a Lightning hold ended, as this client's LND saw its payment. */
type HoldOutcome = { settled: true; msat: bigint } | { settled: false; why: string };

/** Longest wait, once the job has ended, for the aggregator to settle or cancel its hold. */
export const HOLD_OUTCOME_WAIT_MS = 30_000;

function payFlag(ctx: CliContext, raw: string | undefined): "lightning" | undefined {
  if (raw === undefined || raw === "credit") return undefined;
  if (raw !== "lightning") throw new UsageError(`submit: --pay is credit or lightning, not "${raw.slice(0, 32)}"`);
  if (!ctx.config().lndUrl) {
    throw new UsageError("submit --pay lightning needs your Lightning node", {
      hint: "set INFERNET_LND_URL and INFERNET_LND_MACAROON (see `infernet config`)",
    });
  }
  return "lightning";
}

/**
 * Pays the quote's hold invoice from this machine's LND. The payment stays in flight (held along
 * the route) until the aggregator settles it at the job's end or cancels it; this does not wait.
 */
function payHold(ctx: CliContext, quote: JobQuote, json: boolean): Promise<HoldOutcome> {
  const lnd = paymentsSetup(ctx.config()).lnd;
  if (!lnd) throw new UsageError("submit --pay lightning needs INFERNET_LND_URL");
  if (!quote.invoice) throw new RuntimeError("the aggregator answered no Lightning invoice");
  const rail = new LightningRail({ lnd, store: new SqliteEscrowStore(ctx.store().db) });
  const amount = msat(quote.lockedMsat);
  if (!json) ctx.stderr.write(`paying the job's hold invoice of ${formatMsat(amount)} from your Lightning node\n`);
  return rail.pay(quote.invoice, amount, "infernet job").then(
    (r): HoldOutcome => ({ settled: true, msat: r.amount }),
    (err): HoldOutcome => ({ settled: false, why: errorMessage(err) }),
  );
}

async function reportHold(ctx: CliContext, paying: Promise<HoldOutcome>, json: boolean): Promise<void> {
  const outcome = await Promise.race([paying, Bun.sleep(HOLD_OUTCOME_WAIT_MS).then(() => undefined)]);
  if (json) {
    jsonLine(ctx, {
      event: "lightning",
      ...(outcome === undefined
        ? { state: "in-flight" }
        : outcome.settled
          ? { state: "settled", msat: outcome.msat.toString() }
          : { state: "cancelled", reason: outcome.why }),
    });
    return;
  }
  if (outcome === undefined)
    ctx.stderr.write("lightning: the hold is still in flight; your LND will see it settle or fail\n");
  else if (outcome.settled) {
    ctx.stderr.write(
      `lightning: hold settled, ${formatMsat(msat(outcome.msat))} paid; what the job did not spend is your credit at the aggregator\n`,
    );
  } else ctx.stderr.write(`lightning: hold cancelled, nothing paid (${outcome.why})\n`);
}

function maxPriceFlag(raw: string | undefined): number | undefined {
  const amount = amountFlag("submit", "max-price", raw, "msat", msat(MAX_PRICE_MSAT));
  return amount === undefined ? undefined : Number(amount);
}

/** `quote: about 12.5 sat (fee 1%) from 4 providers; 5,000 sat locked from your credit until the job ends`. */
function printQuote(ctx: CliContext, quote: JobQuote, aggregator: string, json: boolean): void {
  if (json) {
    jsonLine(ctx, {
      event: "quote",
      aggregator,
      estimatedMsat: quote.estimatedMsat.toString(),
      lockedMsat: quote.lockedMsat.toString(),
      feePercent: quote.feePercent,
      providers: quote.providers,
    });
    return;
  }
  const locked =
    quote.lockedMsat > 0n
      ? `; ${formatMsat(msat(quote.lockedMsat))} locked from your credit until the job ends, the rest refunded`
      : "; this aggregator takes no payment";
  ctx.stderr.write(
    `quote: about ${formatMsat(msat(quote.estimatedMsat))} (fee ${quote.feePercent}%) from ${quote.providers} provider${quote.providers === 1 ? "" : "s"}${locked}\n`,
  );
}

function detached(ctx: CliContext, jobId: string, json: boolean): number {
  if (!json) {
    ctx.stdout.write(`${jobId}\n`);
    ctx.stderr.write(`follow it with \`infernet job ${jobId} --wait\`\n`);
  }
  return 0;
}

async function openSplitter(settings: SubmitSettings, signal: AbortSignal): Promise<Splitter> {
  const options = {
    ...(settings.shardSize !== undefined ? { shardSize: settings.shardSize } : {}),
    ...(settings.shardCount !== undefined ? { shardCount: settings.shardCount } : {}),
    signal,
  };
  if (settings.input.kind === "prompts") return splitPrompts(settings.input.path, options);
  const splitter = await splitImages(settings.input.path, options);
  if (splitter.kind === "images" && !settings.model.vision) {
    await splitter.close();
    throw new UsageError(`submit: ${settings.model.name} takes tensors, not images; give a .npy array`);
  }
  return splitter;
}

/** What the aggregator is told about the input: its kind and name, never a local path. */
async function inputRef(input: SubmitSettings["input"]): Promise<JobSpec["input"]> {
  const name = basename(input.path);
  if (input.kind === "prompts") return { kind: "prompts", path: name };
  const format = await detectFormat(input.path);
  if (format === "npy") return { kind: "tensor", path: name };
  if (format === "idx") return { kind: "idx", path: name };
  return { kind: "images", paths: [name] };
}

/** The cheapest aggregator found (fee, then peer id, so the choice is stable). */
export function cheapest(found: AggregatorChoice[]): AggregatorRef {
  const best = [...found].sort((a, b) => a.feePercent - b.feePercent || (a.peerId < b.peerId ? -1 : 1))[0];
  if (!best) {
    throw new NoProviderError("no aggregator found", {
      hint: "name one with --aggregator <multiaddr>, or start one with `infernet start --aggregator`",
    });
  }
  return { peerId: best.peerId, addrs: best.addrs };
}

/** `--max-tokens` fills in prompts that set no budget of their own. */
async function* withMaxTokens(shards: AsyncIterable<Shard>, maxTokens: number | undefined): AsyncGenerator<Shard> {
  for await (const shard of shards) {
    if (maxTokens === undefined || shard.payload.kind !== "prompts") {
      yield shard;
      continue;
    }
    const prompts: PromptRecord[] = shard.payload.prompts.map((p) =>
      p.maxTokens === undefined ? { ...p, maxTokens } : p,
    );
    yield { ...shard, payload: { kind: "prompts", prompts } };
  }
}

/** `uploading 3/20 shards (1.2 MB)`, redrawn on a TTY. */
function uploadProgress(ctx: CliContext, total: number, json: boolean): (shards: number, bytes: number) => void {
  return (shards, bytes) => {
    if (json || !ctx.stderr.isTTY) return;
    ctx.stderr.write(`\ruploading ${shards}/${total} shards (${formatBytes(bytes)})\x1b[K`);
  };
}
