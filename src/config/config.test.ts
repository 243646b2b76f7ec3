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
});
