import type { Command } from "./command.ts";

/**
 * Every command, in the order `infernet --help` lists them. A command's module (and whatever heavy
 * runtime it needs) is imported only when that command runs, so `--version` and `--help` stay fast and
 * the headless path never loads what it does not use.
 */
export interface CommandEntry {
  name: string;
  /** One line for the command list. */
  summary: string;
  // biome-ignore lint/suspicious/noExplicitAny: commands differ in their option types
  load(): Promise<Command<any>>;
}

export const COMMANDS: CommandEntry[] = [
  {
    name: "run",
    summary: "Run a model here or on the network: stream text from a language model, classify images",
    load: async () => (await import("./run.ts")).runCommand,
  },
  {
    name: "submit",
    summary: "Run a batch job across the network: split, upload to an aggregator, follow, fetch the result",
    load: async () => (await import("./submit.ts")).submitCommand,
  },
  {
    name: "jobs",
    summary: "List the batch jobs submitted from here (and those this aggregator holds)",
    load: async () => (await import("./jobs.ts")).jobsCommand,
  },
  {
    name: "job",
    summary: "Show a job's report: shards, providers, timings, retries, cost (--wait: follow it)",
    load: async () => (await import("./job.ts")).jobCommand,
  },
  {
    name: "start",
    summary: "Run a node: serve models to the network (--provider) or act as a client/relay",
    load: async () => (await import("./start.ts")).startCommand,
  },
  {
    name: "dash",
    summary: "Open the terminal dashboard on the running node: hardware, jobs, peers, log; pause/resume serving",
    load: async () => (await import("./dash.ts")).dashCommand,
  },
  {
    name: "peers",
    summary: "List providers on the network: GPU, models, price, latency, load, reputation",
    load: async () => (await import("./peers.ts")).peersCommand,
  },
  {
    name: "serve",
    summary: "Serve an OpenAI-compatible HTTP API (chat, completions, models) backed by the network",
    load: async () => (await import("./serve.ts")).serveCommand,
  },
  {
    name: "api-key",
    summary: "Create, list and revoke keys for the HTTP API (rate, concurrency, spend budget)",
    load: async () => (await import("./api-key.ts")).apiKeyCommand,
  },
  {
    name: "wallet",
    summary: "Show the on-chain wallet, payment channels and this node's books; a receive address; withdraw on-chain",
    load: async () => (await import("./wallet.ts")).walletCommand,
  },
  {
    name: "reputation",
    summary: "Show what this aggregator has seen of providers: uptime, completion, latency, faults, score, bans",
    load: async () => (await import("./reputation.ts")).reputationCommand,
  },
  {
    name: "status",
    summary: "Show the running node: id, addresses, mode, connections, load",
    load: async () => (await import("./status.ts")).statusCommand,
  },
  {
    name: "pull",
    summary: "Download catalog models and verify their sha256 (mirror first, resumable)",
    load: async () => (await import("./pull.ts")).pullCommand,
  },
  {
    name: "models",
    summary: "List the model catalog and which models are downloaded",
    load: async () => (await import("./models.ts")).modelsCommand,
  },
  {
    name: "gpu",
    summary: "Show this machine's GPUs, CPU and memory, and its self-benchmark results",
    load: async () => (await import("./gpu.ts")).gpuCommand,
  },
  {
    name: "config",
    summary: "Show the effective settings, where each comes from, and what it means",
    load: async () => (await import("./config.ts")).configCommand,
  },
  {
    name: "doctor",
    summary:
      "Check this machine: config, key, database, disk, clock, GPU driver, runtimes, ports; says how to fix each problem",
    load: async () => (await import("./doctor.ts")).doctorCommand,
  },
  {
    name: "update",
    summary: "Update this installed binary to the latest (or a given) release: sha256 check, self-test, rollback",
    load: async () => (await import("./update.ts")).updateCommand,
  },
  {
    name: "demo",
    summary: "Start a local network (aggregator + 3 providers) and run a sharded, verified job and a streamed prompt",
    load: async () => (await import("./demo.ts")).demoCommand,
  },
];
