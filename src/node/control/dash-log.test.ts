import { expect, test } from "bun:test";
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { tempDir } from "../../../test/helpers/paths.ts";
import { closeLogging, configureLogging, logger } from "../../util/logger.ts";
import { LogTail, logPath } from "./dash-log.ts";
import { LOG_TAIL_LINES, MAX_LOG_MSG_CHARS, MAX_LOG_TAIL_BYTES } from "./dash-protocol.ts";
import { RATE_WINDOW_MS, RateMeter } from "./dash-rate.ts";

test("the tail of a real log file: the newest lines, oldest first, from a bounded window", () => {
  using dir = tempDir();
  configureLogging({ level: "info", dir: dirname(logPath(dir.path)), stderr: false });
  try {
    const log = logger("test:dash");
    // Well over the window: the file is never read whole.
    for (let i = 0; i < 3_000; i++) log.info(`line ${i}`, { padding: "x".repeat(60) });
  } finally {
    closeLogging();
  }
  const tail = new LogTail(logPath(dir.path));
  const lines = tail.read();
  expect(Bun.file(logPath(dir.path)).size).toBeGreaterThan(MAX_LOG_TAIL_BYTES);
  expect(lines).toHaveLength(LOG_TAIL_LINES);
  expect(lines.at(-1)).toMatchObject({ level: "info", ns: "test:dash", msg: "line 2999" });
  expect(lines[0]?.msg).toBe(`line ${3_000 - LOG_TAIL_LINES}`);
  expect(tail.read()).toBe(lines); // unchanged file: the cached lines
});

test("lines that are not the logger's JSON are skipped; long messages are cut", () => {
  using dir = tempDir();
  const path = logPath(dir.path);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, "not json\n");
  appendFileSync(
    path,
    `${JSON.stringify({ t: "2026-01-01T00:00:00Z", level: "warn", ns: "x", msg: "m".repeat(5_000) })}\n`,
  );
  appendFileSync(
    path,
    `${JSON.stringify({ level: "info", msg: "no time" })}\n{"t":"x","level":"info","ns":"y","msg":"cut`,
  );
  const lines = new LogTail(path).read();
  expect(lines).toHaveLength(1);
  expect(lines[0]?.msg).toHaveLength(MAX_LOG_MSG_CHARS);
  expect(new LogTail(`${path}.missing`).read()).toEqual([]);
});

test("the rate is units per second over the window, and nothing once the window has passed", () => {
  let now = 5_000_000;
  const meter = new RateMeter(() => now);
  expect(meter.perSecond()).toBeUndefined();
  meter.add(30);
  now += 10_000;
  meter.add(30);
  expect(meter.perSecond()).toBe(60 / (RATE_WINDOW_MS / 1000));
  now += RATE_WINDOW_MS - 5_000;
  expect(meter.perSecond()).toBe(30 / (RATE_WINDOW_MS / 1000));
  now += RATE_WINDOW_MS;
  expect(meter.perSecond()).toBeUndefined();
});
