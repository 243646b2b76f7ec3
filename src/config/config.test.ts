import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { loadConfig, updateConfigFile } from "./index.ts";

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected an error");
}

describe("config", () => {
  test("defaults, with the home created 0700 and models under it", () => {
    using dir = tempDir();
    const home = join(dir.path, "home");
    const c = loadConfig({ env: { INFERNET_HOME: home } });
    expect(c).toMatchObject({ home, log: "info", gpu: "auto", threads: 0, maxTokens: 256, modelMirror: "" });
    expect(c.modelsDir).toBe(join(home, "models"));
    expect(statSync(home).mode & 0o777).toBe(0o700);
  });

  test("precedence: default < config.json < environment < flags", () => {
    using dir = tempDir();
    writeFileSync(join(dir.path, "config.json"), JSON.stringify({ maxTokens: 10, threads: 3, gpu: "cpu" }));
    const env = { INFERNET_HOME: dir.path, INFERNET_THREADS: "2", INFERNET_MAX_TOKENS: "20" };
    const c = loadConfig({ env, overrides: { maxTokens: 30 } });
    expect(c.gpu).toBe("cpu");
    expect(c.threads).toBe(2);
    expect(c.maxTokens).toBe(30);
  });

  test("bad values name their source", () => {
    using dir = tempDir();
    const env = { INFERNET_HOME: dir.path };
    expect(errorOf(() => loadConfig({ env: { ...env, INFERNET_GPU: "tpu" } })).message).toMatch(
      /invalid value "tpu" for environment variable INFERNET_GPU/,
    );
    expect(errorOf(() => loadConfig({ env: { ...env, INFERNET_THREADS: "-1" } })).name).toBe("ConfigError");
    expect(errorOf(() => loadConfig({ env, overrides: { maxTokens: 0 } })).message).toMatch(/flag --maxTokens/);
  });

  test("a broken config file is a clear ConfigError, never a crash", () => {
    using dir = tempDir();
    const file = join(dir.path, "config.json");
    const env = { INFERNET_HOME: dir.path };
    writeFileSync(file, "{ not json");
    expect(errorOf(() => loadConfig({ env })).message).toMatch(/config\.json is not valid JSON/);
    writeFileSync(file, JSON.stringify({ colour: "blue" }));
    expect(errorOf(() => loadConfig({ env })).name).toBe("ConfigError");
    writeFileSync(file, JSON.stringify({ maxTokens: "many" }));
    expect(errorOf(() => loadConfig({ env })).message).toMatch(/at "maxTokens"/);
    writeFileSync(file, JSON.stringify({ home: "/elsewhere" }));
    expect(errorOf(() => loadConfig({ env })).name).toBe("ConfigError");
  });

  test("INFERNET_HOME whose parent is missing, or that is a file, is refused without creating anything", () => {
    using dir = tempDir();
    const deep = join(dir.path, "a/b/home");
    const e = errorOf(() => loadConfig({ env: { INFERNET_HOME: deep } }));
    expect(e.name).toBe("ConfigError");
    expect(e.message).toMatch(/parent of INFERNET_HOME .*a\/b\) does not exist/);
    expect(existsSync(join(dir.path, "a"))).toBe(false);
    mkdirSync(join(dir.path, "x"));
    writeFileSync(join(dir.path, "x/file"), "");
    expect(errorOf(() => loadConfig({ env: { INFERNET_HOME: join(dir.path, "x/file") } })).message).toMatch(
      /exists and is not a directory/,
    );
  });

  test("serve: none by default, a list in config.json, a comma list in INFERNET_SERVE (which wins)", () => {
    using dir = tempDir();
    const env = { INFERNET_HOME: dir.path };
    expect(loadConfig({ env }).serve).toEqual([]);
    writeFileSync(join(dir.path, "config.json"), JSON.stringify({ serve: ["mnist-8", "stories260k"] }));
    expect(loadConfig({ env }).serve).toEqual(["mnist-8", "stories260k"]);
    expect(loadConfig({ env: { ...env, INFERNET_SERVE: " squeezenet1.1, mnist-8 ," } }).serve).toEqual([
      "squeezenet1.1",
      "mnist-8",
    ]);
    expect(errorOf(() => loadConfig({ env: { ...env, INFERNET_SERVE: "../etc/passwd" } })).name).toBe("ConfigError");
  });

  test("updateConfigFile sets a setting and keeps the others as written, replacing the file whole", () => {
    using dir = tempDir();
    const file = join(dir.path, "config.json");
    const env = { INFERNET_HOME: dir.path };
    updateConfigFile(dir.path, { serve: ["mnist-8"] });
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({ serve: ["mnist-8"] });
    expect(statSync(file).mode & 0o777).toBe(0o600);

    writeFileSync(file, JSON.stringify({ maxTokens: 10, price: "20", serve: ["mnist-8"] }));
    updateConfigFile(dir.path, { serve: ["mnist-8", "stories260k"] });
    // No defaults written in, the user's own spelling kept; nothing left beside it.
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual({
      maxTokens: 10,
      price: "20",
      serve: ["mnist-8", "stories260k"],
    });
    expect(readdirSync(dir.path).filter((f) => f.startsWith("config.json"))).toEqual(["config.json"]);
    expect(loadConfig({ env })).toMatchObject({ maxTokens: 10, price: 20, serve: ["mnist-8", "stories260k"] });
  });

  test("updateConfigFile never writes a file loadConfig would refuse", () => {
    using dir = tempDir();
    const file = join(dir.path, "config.json");
    writeFileSync(file, JSON.stringify({ colour: "blue" }));
    expect(errorOf(() => updateConfigFile(dir.path, { serve: [] })).name).toBe("ConfigError");
    expect(readFileSync(file, "utf8")).toBe(JSON.stringify({ colour: "blue" }));
    writeFileSync(file, "{ not json");
    expect(errorOf(() => updateConfigFile(dir.path, { serve: [] })).message).toMatch(/not valid JSON/);
    expect(readFileSync(file, "utf8")).toBe("{ not json");
  });

  test("payments: regtest over Esplora by default, Lightning off; each key from env or file", () => {
    using dir = tempDir();
    const env = { INFERNET_HOME: dir.path };
    expect(loadConfig({ env })).toMatchObject({
      chainNetwork: "regtest",
      chainBackend: "esplora",
      chainUrl: "",
      bitcoindRpcUser: "",
      bitcoindRpcPassword: "",
      bitcoindCookieFile: "",
      walletFeeRate: 0,
      channelConfirmations: 1,
      lndUrl: "",
      lndMacaroonPath: "",
      lndTlsCertPath: "",
    });
    writeFileSync(
      join(dir.path, "config.json"),
      JSON.stringify({ chainNetwork: "signet", chainBackend: "bitcoind", bitcoindCookieFile: "/data/signet/.cookie" }),
    );
    const c = loadConfig({
      env: {
        ...env,
        INFERNET_CHAIN_NETWORK: "testnet",
        INFERNET_CHAIN_URL: "http://127.0.0.1:18332",
        INFERNET_BITCOIND_RPC_USER: "alice",
        INFERNET_BITCOIND_RPC_PASSWORD: "s3cret",
        INFERNET_WALLET_FEE_RATE: "2.5",
        INFERNET_CHANNEL_CONFIRMATIONS: "6",
        INFERNET_LND_URL: "https://127.0.0.1:8080",
        INFERNET_LND_MACAROON: "lnd/admin.macaroon",
        INFERNET_LND_TLS_CERT: "/lnd/tls.cert",
      },
    });
    expect(c).toMatchObject({
      chainNetwork: "testnet",
      chainBackend: "bitcoind",
      chainUrl: "http://127.0.0.1:18332",
      bitcoindRpcUser: "alice",
      bitcoindRpcPassword: "s3cret",
      bitcoindCookieFile: "/data/signet/.cookie",
      walletFeeRate: 2.5,
      channelConfirmations: 6,
      lndUrl: "https://127.0.0.1:8080",
      lndTlsCertPath: "/lnd/tls.cert",
    });
    // Relative paths are made absolute once, as modelsDir is.
    expect(c.lndMacaroonPath).toBe(join(process.cwd(), "lnd/admin.macaroon"));
  });

  test("payments: a bad network, backend, URL or fee rate is refused with the reason", () => {
    using dir = tempDir();
    const env = { INFERNET_HOME: dir.path };
    const bad = (extra: Record<string, string>) => errorOf(() => loadConfig({ env: { ...env, ...extra } }));
    const network = bad({ INFERNET_CHAIN_NETWORK: "bitcoin" });
    expect(network.name).toBe("ConfigError");
    expect(network.message).toBe(
      'invalid value "bitcoin" for environment variable INFERNET_CHAIN_NETWORK: not a Bitcoin network: use one of regtest, signet, testnet, mainnet',
    );
    expect(bad({ INFERNET_CHAIN_BACKEND: "electrum" }).message).toMatch(/not a chain backend: use esplora or bitcoind/);
    expect(bad({ INFERNET_CHAIN_URL: "ftp://x" }).message).toMatch(
      /INFERNET_CHAIN_URL: an http:\/\/ or https:\/\/ URL/,
    );
    expect(bad({ INFERNET_LND_URL: "localhost:8080" }).name).toBe("ConfigError");
    for (const rate of ["0.5", "-1", "1001", "fast"]) {
      expect(bad({ INFERNET_WALLET_FEE_RATE: rate }).message).toMatch(/INFERNET_WALLET_FEE_RATE: .*0, or 1 to 1000/);
    }
    for (const n of ["-1", "1.5", "145", "many"]) {
      expect(bad({ INFERNET_CHANNEL_CONFIRMATIONS: n }).message).toMatch(/INFERNET_CHANNEL_CONFIRMATIONS/);
    }
    writeFileSync(join(dir.path, "config.json"), JSON.stringify({ chainNetwork: "Mainnet" }));
    expect(errorOf(() => loadConfig({ env })).message).toMatch(/at "chainNetwork": not a Bitcoin network/);
  });
});
