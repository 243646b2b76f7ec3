import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { loadConfig } from "./index.ts";

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
});
