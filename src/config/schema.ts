import { z } from "zod";

/**
 * The one source of truth for settings: defaults, descriptions, environment variables.
 * Precedence, lowest first: default, `INFERNET_HOME/config.json`, `INFERNET_*` environment, command flags.
 */
export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const GPU_CHOICES = ["auto", "cuda", "vulkan", "metal", "cpu"] as const;
export type GpuChoice = (typeof GPU_CHOICES)[number];

/** Where a node listens unless told otherwise: QUIC first (faster on every measurement here), then TCP. */
export const DEFAULT_LISTEN = ["/ip4/0.0.0.0/udp/7707/quic-v1", "/ip4/0.0.0.0/tcp/7707"] as const;

/** Most models a node is configured to serve (a capability record holds 64). */
export const MAX_SERVED_MODELS = 64;

/**
 * Bitcoin networks and chain backends, by the names payments/chain uses (CHAIN_NETWORKS,
 * CHAIN_BACKENDS). Spelled out here so loading the config never loads bitcoinjs; payments/setup.ts
 * passes these values where the chain's own types are required, so tsc fails if the lists drift.
 */
export const CHAIN_NETWORK_NAMES = ["regtest", "signet", "testnet", "mainnet"] as const;
export type ChainNetworkName = (typeof CHAIN_NETWORK_NAMES)[number];
export const CHAIN_BACKEND_NAMES = ["esplora", "bitcoind"] as const;
export type ChainBackendName = (typeof CHAIN_BACKEND_NAMES)[number];

/** Highest fee rate a setting may ask for, sat/vB (payments/chain's sanity cap). */
export const MAX_WALLET_FEE_RATE = 1000;
/** A channel's funding must have this many confirmations before payments over it count (a payee's default). */
export const DEFAULT_CHANNEL_CONFIRMATIONS = 1;
/** Most confirmations a node may ask for (a day of blocks). */
export const MAX_CHANNEL_CONFIRMATIONS = 144;

/** A list given as an array (config file, flags) or a comma-separated string (environment). */
const commaList = (v: unknown) =>
  typeof v === "string"
    ? v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
    : v;

const multiaddrList = z.preprocess(
  commaList,
  z.array(z.string().regex(/^\//, "a multiaddr starting with /").max(1024)).max(64),
);

/** Catalog model names, as an array (config file) or a comma-separated string (environment). */
const modelNameList = z.preprocess(
  commaList,
  z
    .array(
      z
        .string()
        .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "a catalog model name")
        .max(256),
    )
    .max(MAX_SERVED_MODELS),
);

/** An http(s) URL, or empty for "the default" / "off" (as the setting says). */
const optionalUrl = z
  .string()
  .trim()
  .max(2048)
  .regex(/^(https?:\/\/\S+)?$/, "an http:// or https:// URL (or empty)");

/** A file path, or empty for none. */
const optionalPath = z.string().trim().max(4096);

const booleanish = z.preprocess(
  (v) => (typeof v === "string" ? ["1", "true", "yes", "on"].includes(v.trim().toLowerCase()) : v),
  z.boolean(),
);

interface Setting<T extends z.ZodType> {
  /** Environment variable that sets it, if any. */
  env?: string;
  description: string;
  /** A credential: whatever prints settings (`infernet config`) must show it masked. */
  secret?: boolean;
  schema: T;
}

const setting = <T extends z.ZodType>(s: Setting<T>) => s;
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

export const SETTINGS = {
  home: setting({
    env: "INFERNET_HOME",
    description: "Where Infernet keeps its database, models, logs and keys (default ~/.infernet). Env only.",
    schema: z.string().min(1),
  }),
  log: setting({
    env: "INFERNET_LOG",
    description: "Log level for the log file (and stderr when debug): error, warn, info, debug.",
    schema: z.enum(LOG_LEVELS).default("info"),
  }),
  modelMirror: setting({
    env: "INFERNET_MODEL_MIRROR",
    description:
      "A folder or http(s) URL holding catalog model files by file name, tried before the public sources (offline and air-gapped machines).",
    schema: z.string().default(""),
  }),
  modelsDir: setting({
    env: "INFERNET_MODELS_DIR",
    description: "Where downloaded models are stored (default INFERNET_HOME/models).",
    schema: z.string().default(""),
  }),
  gpu: setting({
    env: "INFERNET_GPU",
    description: "GPU backend for llama.cpp: auto (CUDA, then Vulkan/Metal, then CPU), cuda, vulkan, metal or cpu.",
    schema: z.enum(GPU_CHOICES).default("auto"),
  }),
  threads: setting({
    env: "INFERNET_THREADS",
    description: "CPU threads for llama.cpp; 0 means calibrate once per model and machine and use the fastest.",
    schema: int(0, 1024).default(0),
  }),
  maxLoadedModelMb: setting({
    env: "INFERNET_MAX_LOADED_MODEL_MB",
    description: "Memory budget for models kept loaded between requests (LRU); 0 means half of this machine's RAM.",
    schema: int(0, 16_777_216).default(0),
  }),
  maxTokens: setting({
    env: "INFERNET_MAX_TOKENS",
    description: "Default maximum number of tokens to generate.",
    schema: int(1, 1_000_000).default(256),
  }),
  contextSize: setting({
    env: "INFERNET_CONTEXT_SIZE",
    description: "Default context window in tokens (capped at what the model was trained for).",
    schema: int(64, 1_048_576).default(4096),
  }),
  downloadParts: setting({
    env: "INFERNET_DOWNLOAD_PARTS",
    description: "Parallel ranged connections for one large download.",
    schema: int(1, 32).default(4),
  }),
  listen: setting({
    env: "INFERNET_LISTEN",
    description:
      "Multiaddrs a node listens on, comma-separated (QUIC and TCP); port 0 picks a free port. Flag: --listen (repeatable).",
    schema: multiaddrList.default([...DEFAULT_LISTEN]),
  }),
  announce: setting({
    env: "INFERNET_ANNOUNCE",
    description:
      "Multiaddrs to announce instead of the listen addresses (e.g. a public IP behind NAT), comma-separated.",
    schema: multiaddrList.default([]),
  }),
  bootstrap: setting({
    env: "INFERNET_BOOTSTRAP",
    description: "Bootstrap peers (multiaddrs with /p2p/<id>), comma-separated. Flag: --bootstrap (repeatable).",
    schema: multiaddrList.default([]),
  }),
  mdns: setting({
    env: "INFERNET_MDNS",
    description: "Find peers on the local network with mDNS (true/false).",
    schema: booleanish.default(true),
  }),
  price: setting({
    env: "INFERNET_PRICE",
    description: "Provider price in satoshis per 1,000 tokens generated (or 1,000 ONNX records).",
    schema: z.coerce.number().min(0).max(1_000_000).default(10),
  }),
  serve: setting({
    env: "INFERNET_SERVE",
    description:
      "Catalog models `infernet start --provider` serves when no --models is given, comma-separated; the dashboard's `m` adds and removes them.",
    schema: modelNameList.default([]),
  }),
  chainNetwork: setting({
    env: "INFERNET_CHAIN_NETWORK",
    description:
      "Bitcoin network payments use: regtest (development, the default), signet, testnet or mainnet (real money).",
    schema: z
      .enum(CHAIN_NETWORK_NAMES, { error: `not a Bitcoin network: use one of ${CHAIN_NETWORK_NAMES.join(", ")}` })
      .default("regtest"),
  }),
  chainBackend: setting({
    env: "INFERNET_CHAIN_BACKEND",
    description:
      "How the wallet reads and writes the chain: esplora (an Esplora REST server) or bitcoind (its JSON-RPC).",
    schema: z
      .enum(CHAIN_BACKEND_NAMES, { error: `not a chain backend: use ${CHAIN_BACKEND_NAMES.join(" or ")}` })
      .default("esplora"),
  }),
  chainUrl: setting({
    env: "INFERNET_CHAIN_URL",
    description:
      "Esplora base URL or bitcoind RPC URL; empty means the network's default (public Esplora, or bitcoind on localhost).",
    schema: optionalUrl.default(""),
  }),
  bitcoindRpcUser: setting({
    env: "INFERNET_BITCOIND_RPC_USER",
    description: "bitcoind RPC user (with the password); empty means use the cookie file.",
    schema: z.string().max(1024).default(""),
  }),
  bitcoindRpcPassword: setting({
    env: "INFERNET_BITCOIND_RPC_PASSWORD",
    description: "bitcoind RPC password (with the user). A secret: prefer the cookie file.",
    secret: true,
    schema: z.string().max(1024).default(""),
  }),
  bitcoindCookieFile: setting({
    env: "INFERNET_BITCOIND_COOKIE",
    description:
      "Path of bitcoind's .cookie file (in its data directory: regtest/.cookie on regtest), used when no RPC user is set.",
    schema: optionalPath.default(""),
  }),
  walletFeeRate: setting({
    env: "INFERNET_WALLET_FEE_RATE",
    description: `On-chain fee rate in sat/vB (1 to ${MAX_WALLET_FEE_RATE}); 0 means ask the chain's estimate (regtest has none: set it there).`,
    schema: z.coerce
      .number({ error: `a number of sat/vB: 0, or 1 to ${MAX_WALLET_FEE_RATE}` })
      .refine((v) => v === 0 || (v >= 1 && v <= MAX_WALLET_FEE_RATE), `0, or 1 to ${MAX_WALLET_FEE_RATE} sat/vB`)
      .default(0),
  }),
  channelConfirmations: setting({
    env: "INFERNET_CHANNEL_CONFIRMATIONS",
    description: `Confirmations a channel's funding needs before payments over it count here (0 to ${MAX_CHANNEL_CONFIRMATIONS}; 0: once it is published).`,
    schema: z.coerce
      .number({ error: `a whole number of blocks, 0 to ${MAX_CHANNEL_CONFIRMATIONS}` })
      .int()
      .min(0)
      .max(MAX_CHANNEL_CONFIRMATIONS)
      .default(DEFAULT_CHANNEL_CONFIRMATIONS),
  }),
  lndUrl: setting({
    env: "INFERNET_LND_URL",
    description: "LND REST URL (https://host:8080) for Lightning payments; empty means Lightning is off.",
    schema: optionalUrl.default(""),
  }),
  lndMacaroonPath: setting({
    env: "INFERNET_LND_MACAROON",
    description: "Path of the LND macaroon to use (admin.macaroon, or one with invoice and offchain permissions).",
    schema: optionalPath.default(""),
  }),
  lndTlsCertPath: setting({
    env: "INFERNET_LND_TLS_CERT",
    description: "Path of LND's tls.cert, trusted for the LND connection only; empty means the system's CAs.",
    schema: optionalPath.default(""),
  }),
} as const;

export type SettingKey = keyof typeof SETTINGS;

/** The settings a config file may hold (home is env-only: the file lives inside it). */
export const FILE_SCHEMA = z
  .object({
    log: SETTINGS.log.schema.optional(),
    modelMirror: SETTINGS.modelMirror.schema.optional(),
    modelsDir: SETTINGS.modelsDir.schema.optional(),
    gpu: SETTINGS.gpu.schema.optional(),
    threads: SETTINGS.threads.schema.optional(),
    maxLoadedModelMb: SETTINGS.maxLoadedModelMb.schema.optional(),
    maxTokens: SETTINGS.maxTokens.schema.optional(),
    contextSize: SETTINGS.contextSize.schema.optional(),
    downloadParts: SETTINGS.downloadParts.schema.optional(),
    listen: SETTINGS.listen.schema.optional(),
    announce: SETTINGS.announce.schema.optional(),
    bootstrap: SETTINGS.bootstrap.schema.optional(),
    mdns: SETTINGS.mdns.schema.optional(),
    price: SETTINGS.price.schema.optional(),
    serve: SETTINGS.serve.schema.optional(),
    chainNetwork: SETTINGS.chainNetwork.schema.optional(),
    chainBackend: SETTINGS.chainBackend.schema.optional(),
    chainUrl: SETTINGS.chainUrl.schema.optional(),
    bitcoindRpcUser: SETTINGS.bitcoindRpcUser.schema.optional(),
    bitcoindRpcPassword: SETTINGS.bitcoindRpcPassword.schema.optional(),
    bitcoindCookieFile: SETTINGS.bitcoindCookieFile.schema.optional(),
    walletFeeRate: SETTINGS.walletFeeRate.schema.optional(),
    channelConfirmations: SETTINGS.channelConfirmations.schema.optional(),
    lndUrl: SETTINGS.lndUrl.schema.optional(),
    lndMacaroonPath: SETTINGS.lndMacaroonPath.schema.optional(),
    lndTlsCertPath: SETTINGS.lndTlsCertPath.schema.optional(),
  })
  .strict();

export interface Config {
  home: string;
  log: LogLevel;
  modelMirror: string;
  modelsDir: string;
  gpu: GpuChoice;
  threads: number;
  maxLoadedModelMb: number;
  maxTokens: number;
  contextSize: number;
  downloadParts: number;
  listen: string[];
  announce: string[];
  bootstrap: string[];
  mdns: boolean;
  price: number;
  serve: string[];
  chainNetwork: ChainNetworkName;
  chainBackend: ChainBackendName;
  /** Empty: the network's default URL for the backend. */
  chainUrl: string;
  bitcoindRpcUser: string;
  bitcoindRpcPassword: string;
  /** Absolute, or empty. */
  bitcoindCookieFile: string;
  /** sat/vB; 0 means the chain's estimate. */
  walletFeeRate: number;
  /** Blocks a channel's funding must be buried under before payments over it count here. */
  channelConfirmations: number;
  /** Empty: Lightning is off. */
  lndUrl: string;
  /** Absolute, or empty. */
  lndMacaroonPath: string;
  /** Absolute, or empty. */
  lndTlsCertPath: string;
}
