import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { z } from "zod";
import { ConfigError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/files.ts";
import { resolveHome } from "./env.ts";
import { type Config, FILE_SCHEMA, SETTINGS, type SettingKey } from "./schema.ts";

export { environment, resolveHome } from "./env.ts";
export type { ChainBackendName, ChainNetworkName, Config, GpuChoice, LogLevel } from "./schema.ts";
export { CHAIN_BACKEND_NAMES, CHAIN_NETWORK_NAMES, MAX_WALLET_FEE_RATE, SETTINGS } from "./schema.ts";

/** The settings file's name inside INFERNET_HOME. */
const CONFIG_FILE = "config.json";
/** Largest config file we will parse. */
const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

export type ConfigOverrides = Partial<Omit<Config, "home">>;

export interface LoadConfigOptions {
  /** Values from command flags; they win over everything else. */
  overrides?: ConfigOverrides;
  /** The environment to read; defaults to `process.env` (tests pass their own). */
  env?: Record<string, string | undefined>;
}

/**
 * Builds the effective configuration: defaults < `INFERNET_HOME/config.json` < env < flags.
 * Creates the home directory (mode 0700) if its parent exists; a missing parent is a user error.
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const home = resolveHome(env);
  ensureHome(home);

  const fromFile = readConfigFile(configFilePath(home));
  const fromEnv: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(SETTINGS) as [SettingKey, (typeof SETTINGS)[SettingKey]][]) {
    if (key === "home" || !s.env) continue;
    const value = env[s.env];
    if (value !== undefined && value !== "") fromEnv[key] = value;
  }

  const merged: Record<string, unknown> = { ...fromFile };
  for (const [key, value] of Object.entries(fromEnv)) {
    merged[key] = parseSetting(key as SettingKey, value, `environment variable ${SETTINGS[key as SettingKey].env}`);
  }
  for (const [key, value] of Object.entries(options.overrides ?? {})) {
    if (value !== undefined) merged[key] = parseSetting(key as SettingKey, value, `flag --${key}`);
  }

  const config: Config = {
    home,
    log: SETTINGS.log.schema.parse(merged.log),
    modelMirror: SETTINGS.modelMirror.schema.parse(merged.modelMirror),
    modelsDir: SETTINGS.modelsDir.schema.parse(merged.modelsDir),
    gpu: SETTINGS.gpu.schema.parse(merged.gpu),
    threads: SETTINGS.threads.schema.parse(merged.threads),
    maxLoadedModelMb: SETTINGS.maxLoadedModelMb.schema.parse(merged.maxLoadedModelMb),
    maxTokens: SETTINGS.maxTokens.schema.parse(merged.maxTokens),
    contextSize: SETTINGS.contextSize.schema.parse(merged.contextSize),
    downloadParts: SETTINGS.downloadParts.schema.parse(merged.downloadParts),
    listen: SETTINGS.listen.schema.parse(merged.listen),
    announce: SETTINGS.announce.schema.parse(merged.announce),
    bootstrap: SETTINGS.bootstrap.schema.parse(merged.bootstrap),
    mdns: SETTINGS.mdns.schema.parse(merged.mdns),
    price: SETTINGS.price.schema.parse(merged.price),
    serve: SETTINGS.serve.schema.parse(merged.serve),
    chainNetwork: SETTINGS.chainNetwork.schema.parse(merged.chainNetwork),
    chainBackend: SETTINGS.chainBackend.schema.parse(merged.chainBackend),
    chainUrl: SETTINGS.chainUrl.schema.parse(merged.chainUrl),
    bitcoindRpcUser: SETTINGS.bitcoindRpcUser.schema.parse(merged.bitcoindRpcUser),
    bitcoindRpcPassword: SETTINGS.bitcoindRpcPassword.schema.parse(merged.bitcoindRpcPassword),
    bitcoindCookieFile: absoluteOrEmpty(SETTINGS.bitcoindCookieFile.schema.parse(merged.bitcoindCookieFile)),
    walletFeeRate: SETTINGS.walletFeeRate.schema.parse(merged.walletFeeRate),
    channelConfirmations: SETTINGS.channelConfirmations.schema.parse(merged.channelConfirmations),
    lndUrl: SETTINGS.lndUrl.schema.parse(merged.lndUrl),
    lndMacaroonPath: absoluteOrEmpty(SETTINGS.lndMacaroonPath.schema.parse(merged.lndMacaroonPath)),
    lndTlsCertPath: absoluteOrEmpty(SETTINGS.lndTlsCertPath.schema.parse(merged.lndTlsCertPath)),
  };
  config.modelsDir = config.modelsDir ? resolve(config.modelsDir) : join(home, "models");
  return config;
}

/** A configured file path made absolute (relative to the working directory, as modelsDir is); empty stays empty. */
function absoluteOrEmpty(path: string): string {
  return path ? resolve(path) : "";
}

/** The settings file inside a home. */
export function configFilePath(home: string): string {
  return join(home, CONFIG_FILE);
}

/** The settings a config file may hold, as written by `updateConfigFile`. */
export type FileSettings = z.infer<typeof FILE_SCHEMA>;

/**
 * Sets some settings in `INFERNET_HOME/config.json`, keeping the others: the merged file is checked
 * against the schema (never written in a form `loadConfig` would refuse), written beside the old one
 * and renamed over it, so a crash leaves the old file or the new one, never half of one.
 */
export function updateConfigFile(home: string, changes: FileSettings): void {
  const path = configFilePath(home);
  const raw = readRawConfigFile(path) ?? {};
  // The other keys are kept as the user wrote them (no defaults written in); the result must still load.
  const merged = { ...(raw as Record<string, unknown>), ...changes };
  checkConfigFile(path, merged);
  try {
    writeFileAtomic(path, `${JSON.stringify(merged, null, 2)}\n`);
  } catch (cause) {
    throw new ConfigError(`cannot write ${path}`, { hint: "check the permissions of INFERNET_HOME", cause });
  }
}

function parseSetting(key: SettingKey, value: unknown, source: string): unknown {
  const result = SETTINGS[key].schema.safeParse(value);
  if (!result.success) {
    throw new ConfigError(`invalid value ${JSON.stringify(value)} for ${source}: ${describeIssue(result.error)}`, {
      hint: `${SETTINGS[key].description}`,
    });
  }
  return result.data;
}

function describeIssue(error: z.ZodError): string {
  return error.issues.map((i) => i.message).join("; ");
}

function ensureHome(home: string): void {
  if (existsSync(home)) {
    if (!statSync(home).isDirectory()) {
      throw new ConfigError(`INFERNET_HOME ${home} exists and is not a directory`, {
        hint: "point INFERNET_HOME at a directory",
      });
    }
    return;
  }
  const parent = dirname(home);
  if (!existsSync(parent)) {
    throw new ConfigError(`the parent of INFERNET_HOME (${parent}) does not exist`, {
      hint: "create it first, or set INFERNET_HOME to a path whose parent exists",
    });
  }
  try {
    mkdirSync(home, { mode: 0o700 });
  } catch (cause) {
    throw new ConfigError(`cannot create INFERNET_HOME ${home}`, { hint: "check permissions", cause });
  }
}

function readConfigFile(path: string): Record<string, unknown> {
  const raw = readRawConfigFile(path);
  return raw === undefined ? {} : checkConfigFile(path, raw);
}

/** The file's JSON as written (no defaults filled in), or undefined when there is no file. */
function readRawConfigFile(path: string): unknown {
  if (!existsSync(path)) return undefined;
  const size = statSync(path).size;
  if (size > MAX_CONFIG_FILE_BYTES) {
    throw new ConfigError(`${path} is ${size} bytes, more than the ${MAX_CONFIG_FILE_BYTES} a config file may be`);
  }
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (cause) {
    throw new ConfigError(`${path} is not valid JSON`, { hint: "fix or delete the file", cause });
  }
}

function checkConfigFile(path: string, raw: unknown): Record<string, unknown> {
  const result = FILE_SCHEMA.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.length ? ` at "${issue.path.join(".")}"` : "";
    throw new ConfigError(`${path}${where}: ${issue?.message ?? "invalid"}`, {
      hint: "run `infernet config` to see the settings and their meaning",
    });
  }
  return result.data;
}
