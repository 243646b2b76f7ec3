import { join } from "node:path";
import { startGateway } from "../api/server.ts";
import { DEFAULT_FEE_PERCENT, parseFee } from "../jobs/fee.ts";
import { resolveLocalModel } from "../models/local.ts";
import { runOnNetwork } from "../node/client.ts";
import { ControlClient } from "../node/control/client.ts";
import { startControlServer } from "../node/control/server.ts";
import { InfernetNode } from "../node/node.ts";
import type { Msat } from "../payments/amount.ts";
import { type PriceFlags, priceFlags } from "../payments/pricing.ts";
import { paymentsSetup } from "../payments/setup.ts";
import { ConfigError, errorMessage, RuntimeError, UsageError } from "../util/errors.ts";
import { configureLogging } from "../util/logger.ts";
import { amountFlag, intFlag, MAX_AMOUNT_FLAG_MSAT } from "./args.ts";
import { type CliContext, defineCommand } from "./command.ts";
import { onTerminal, openDashboard } from "./dash.ts";
import { applyNetworkOptions, NETWORK_OPTIONS } from "./network-options.ts";
import { progressReporter } from "./progress.ts";
import { gatewayAccess, gatewayBackend, type LocalRuns, preferFlag } from "./serve.ts";

export const startCommand = defineCommand({
  name: "start",
  usage: [
    "start --provider --models stories260k,mnist-8 [--price 20]",
    "start --aggregator [--fee 1%] [--provider --models ...]",
    "start [--bootstrap MULTIADDR]... [--listen MULTIADDR]...",
  ],
  details: `Runs a node in the foreground. On a terminal it opens the dashboard (see \`infernet dash\`; q
stops the node once the work it is doing for others is done, q twice stops it at once); with no
terminal (systemd, pipes) or with --no-dash it runs headless until Ctrl-C, logging to stderr. With
--provider it serves the given catalog models (downloaded and verified first; without --models, those
of the \`serve\` setting) and announces them, with this machine's hardware, price and load, to the
network. With --aggregator it also takes batch jobs from clients (\`infernet
submit\`), runs every shard on several providers, verifies and merges the results, for a fee of 0.5%
to 2% of what the providers are paid. Without either, the node is a client and relay: \`infernet run\`, \`peers\`
and \`status\` on this machine use its connections through the local control socket.

Examples:
  infernet start --provider --models stories260k,mnist-8 --price 20
  infernet start --aggregator --fee 1%
  infernet start --bootstrap /ip4/192.0.2.10/udp/7707/quic-v1/p2p/12D3KooW...`,
  options: {
    provider: { type: "boolean", description: "Serve models to the network" },
    models: { type: "string", multiple: true, value: "NAMES", description: "Models to serve, comma-separated" },
    price: {
      type: "string",
      multiple: true,
      value: "PRICE",
      description:
        "Sats per 1,000 tokens or inferences for every model (default: config price), or one model's: MODEL=2sat/1ktok, MODEL=1sat/1kinf, MODEL=500msat/1ktok-in (prompt tokens), MODEL=1sat/s (compute-second); repeatable",
    },
    "require-payment": {
      type: "boolean",
      description:
        "With --provider, charge direct requests: paid as they stream over a channel from the client (`infernet run --max-price`)",
    },
    aggregator: { type: "boolean", description: "Take batch jobs from clients and run them across providers" },
    escrow: {
      type: "boolean",
      description:
        "With --aggregator, take payment: a job runs only when its client's credit here (paid over a channel) covers its quote",
    },
    "min-bond": {
      type: "string",
      value: "AMOUNT",
      description:
        "With --escrow, give copies only to providers whose bond here is at least this (1000sat, 500msat; bare: sats)",
    },
    fee: {
      type: "string",
      value: "PERCENT",
      description: `Aggregator fee, 0.5% to 2% (default ${DEFAULT_FEE_PERCENT}%)`,
    },
    api: {
      type: "string",
      value: "PORT",
      description: "Also serve the OpenAI/Ollama-compatible API on 127.0.0.1:PORT (see `infernet serve`)",
    },
    prefer: {
      type: "string",
      value: "WHERE",
      description: "With --api, local: run the models this node serves on it; network (default): on providers",
    },
    json: { type: "boolean", description: "Print the node's status as one JSON line once it is up (headless)" },
    "no-dash": { type: "boolean", description: "Run headless even on a terminal: log to stderr, stop with Ctrl-C" },
    ...NETWORK_OPTIONS,
  },
  async run(ctx, { values, positionals }) {
    if (positionals.length) throw new UsageError(`start: unexpected argument "${positionals[0]}"`);
    const given = (values.models ?? [])
      .flatMap((m) => m.split(","))
      .map((m) => m.trim())
      .filter(Boolean);
    if (given.length && !values.provider) throw new UsageError("start: --models needs --provider");
    if (values.fee !== undefined && !values.aggregator) throw new UsageError("start: --fee needs --aggregator");
    if (values.escrow && !values.aggregator) throw new UsageError("start: --escrow needs --aggregator");
    const minBondMsat = amountFlag("start", "min-bond", values["min-bond"], "sat", MAX_AMOUNT_FLAG_MSAT);
    if (minBondMsat !== undefined && !values.escrow) throw new UsageError("start: --min-bond needs --escrow");
    if (values["require-payment"] && !values.provider) {
      throw new UsageError("start: --require-payment needs --provider");
    }
    const feePercent = values.fee !== undefined ? parseFee(values.fee) : DEFAULT_FEE_PERCENT;
    const prices = priceFlags(values.price ?? []);
    if (prices.sats !== undefined) ctx.overrides.price = prices.sats;
    applyNetworkOptions(ctx, values);
    const names = values.provider && !given.length ? ctx.config().serve : given;
    if (values.provider && !names.length) {
      throw new UsageError("start: --provider needs --models", {
        hint: "e.g. --models stories260k,mnist-8 (or set `serve` in config.json / INFERNET_SERVE)",
      });
    }
    const api = intFlag("start", "api", values.api, 0, 65_535);
    if (values.prefer !== undefined && api === undefined) throw new UsageError("start: --prefer needs --api");
    const prefer = preferFlag("start", values.prefer);
    const unserved = [...prices.perModel.keys()].find((m) => !names.includes(m));
    if (unserved) {
      throw new UsageError(`start: --price names ${unserved}, which this node does not serve`, {
        hint: `add it to --models, or drop its --price`,
      });
    }
    return runNode(ctx, {
      models: names,
      prices,
      ...(api !== undefined ? { apiPort: api, apiPrefer: prefer } : {}),
      ...(values.aggregator
        ? {
            aggregator: {
              feePercent,
              ...(values.escrow ? { escrow: true } : {}),
              ...(minBondMsat !== undefined ? { minBondMsat } : {}),
            },
          }
        : {}),
      ...(values["require-payment"] ? { requirePayment: true } : {}),
      json: Boolean(values.json),
      dashboard: !values["no-dash"] && !values.json && onTerminal(ctx),
    });
  },
});

export interface RunNodeOptions {
  /** Catalog models (or files) to serve; empty = client/relay (unless an aggregator). */
  models: string[];
  /** Per-model prices from `--price MODEL=...`. */
  prices?: PriceFlags;
  aggregator?: { feePercent: number; escrow?: boolean; minBondMsat?: Msat };
  /** Charge direct requests as they stream (payments/direct.ts). */
  requirePayment?: boolean;
  /** Print the status as one JSON line once up (headless only). */
  json: boolean;
  /** Open the dashboard on this terminal; closing it stops the node. Otherwise run headless until Ctrl-C. */
  dashboard: boolean;
  /** Serve the HTTP API on 127.0.0.1 at this port (0: any free one). */
  apiPort?: number;
  /** Whether the API runs the models this node serves on it (default: on the network). */
  apiPrefer?: "local" | "network";
}

/** Runs a node in the foreground (with the dashboard, or headless) until it is told to stop; the exit code. */
export async function runNode(ctx: CliContext, options: RunNodeOptions): Promise<number> {
  const config = ctx.config();
  if (await ControlClient.connect(config.home)) {
    throw new ConfigError(`a node is already running with INFERNET_HOME ${config.home}`, {
      hint: options.dashboard
        ? "open its dashboard with `infernet dash`"
        : "stop it first, or use another INFERNET_HOME",
    });
  }
  const store = ctx.store();
  const serve = [];
  for (const name of options.models) {
    serve.push(
      await resolveLocalModel(name, {
        config,
        store,
        signal: ctx.signal,
        onProgress: progressReporter(ctx.stderr, name),
      }),
    );
  }
  if (options.dashboard) ctx.stderr.write("Starting the node…\n");
  const payments = paymentsSetup(config);
  // A provider with LND announces its node key: aggregators pay its earnings there by keysend.
  const lightningNodeKey = options.models.length && config.lndUrl ? await lndNodeKey(payments, ctx) : undefined;
  const node = await InfernetNode.start({
    config,
    store,
    serve,
    signal: ctx.signal,
    ...(options.prices ? { prices: options.prices } : {}),
    payments: {
      wallet: () => payments.wallet(),
      chain: payments.chain,
      network: payments.network,
      feeRate: (signal) => payments.feeRate(signal ? { signal } : {}),
      // An escrowing aggregator with LND configured also takes jobs paid with hold invoices.
      ...(options.aggregator?.escrow && config.lndUrl ? { lnd: payments.lnd } : {}),
    },
    ...(options.aggregator ? { aggregator: options.aggregator } : {}),
    ...(options.requirePayment ? { requirePayment: true } : {}),
    ...(lightningNodeKey ? { lightningNodeKey } : {}),
  });
  try {
    await using _control = await startControlServer(node, config.home);
    // The API goes through this node's own connections (its provider choice and failover).
    const gateway =
      options.apiPort === undefined
        ? undefined
        : startGateway({
            hostname: "127.0.0.1",
            port: options.apiPort,
            backend: gatewayBackend(
              { node, run: (model, request, o) => runOnNetwork(node, model, request, o) },
              options.apiPrefer === "local" ? servedHere(node) : undefined,
            ),
            access: gatewayAccess(ctx, false),
            defaultMaxTokens: config.maxTokens,
          });
    await using _gateway = { [Symbol.asyncDispose]: async () => void (await gateway?.stop(true)) };
    const apiUrl = gateway ? `http://127.0.0.1:${gateway.port}/v1` : undefined;
    if (options.dashboard) {
      // The dashboard is a client of this node like any other (through the control socket); leaving
      // it (q, after the node's work drained, or q twice) stops the node.
      await openDashboard(ctx, config, true);
      ctx.stdout.write(`Infernet node ${node.peerId} stopped.\n`);
      return 0;
    }
    // Up and serving: from here on the log goes to stderr too (a refusal before this point is one line).
    configureLogging({ level: config.log, dir: join(config.home, "logs"), stderr: true });
    const s = node.status();
    if (options.json) ctx.stdout.write(`${JSON.stringify(apiUrl ? { ...s, api: apiUrl } : s)}\n`);
    else {
      ctx.stdout.write(
        `Infernet node ${s.peerId} (${s.mode}${serve.length ? `: ${serve.map((m) => m.name).join(", ")} at ${s.price} sats/1k tokens` : ""}${s.aggregator ? `; aggregator, ${s.aggregator.feePercent}% fee` : ""})\n` +
          `Listening on:\n${s.addresses.map((a) => `  ${a}`).join("\n")}\n` +
          `${apiUrl ? `API: ${apiUrl} (OpenAI; Ollama's /api on the same port)\n` : ""}Press Ctrl-C to stop.\n`,
      );
    }
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      ctx.signal.addEventListener("abort", () => resolve(), { once: true });
    });
  } finally {
    await node.stop();
  }
  return 0;
}

/** The text models this node serves, run on its own engine (`--api --prefer local`). */
function servedHere(node: InfernetNode): LocalRuns {
  return {
    self: node.peerId,
    model: async (sha256) => {
      const m = node.serving.find((s) => s.sha256 === sha256);
      return m?.runtime === "llama" ? m : undefined;
    },
    engine: async () => {
      const engine = node.engines?.llama;
      if (!engine) throw new RuntimeError("this node has no llama.cpp engine yet");
      return engine;
    },
  };
}

/** This node's LND public key, or undefined (with a warning) when LND cannot be asked now. */
async function lndNodeKey(payments: ReturnType<typeof paymentsSetup>, ctx: CliContext): Promise<string | undefined> {
  try {
    return (await payments.lnd?.getInfo(ctx.signal))?.pubkey;
  } catch (err) {
    ctx.stderr.write(`infernet: LND did not answer (${errorMessage(err)}); earnings will be paid over channels\n`);
    return undefined;
  }
}
