import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { closeLogging, configureLogging, logger } from "./logger.ts";

afterEach(() => configureLogging({ level: "warn", stderr: false }));

describe("logger", () => {
  test("writes JSON lines at or above the level to logs/infernet.log (mode 0600)", () => {
    using dir = tempDir();
    const logs = join(dir.path, "logs");
    configureLogging({ level: "info", dir: logs, stderr: false });
    const log = logger("test:ns");
    log.debug("hidden");
    log.info("shown", { n: 1 });
    log.error("failed", { err: new TypeError("boom") });
    closeLogging();
    const file = join(logs, "infernet.log");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const lines = readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.msg)).toEqual(["shown", "failed"]);
    expect(lines[0]).toMatchObject({ level: "info", ns: "test:ns", n: 1 });
    expect(lines[1].err).toMatchObject({ name: "TypeError", message: "boom" });
    expect(log.enabled("debug")).toBe(false);
  });
});
