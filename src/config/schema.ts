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

const booleanish = z.preprocess(
  (v) => (typeof v === "string" ? ["1", "true", "yes", "on"].includes(v.trim().toLowerCase()) : v),
  z.boolean(),
);

interface Setting<T extends z.ZodType> {
  /** Environment variable that sets it, if any. */
  env?: string;
  description: string;
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
}
