import { expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { requireModel } from "../models/catalog.ts";
import type { SubmitSettings } from "./job-file.ts";
import { DERIVED_KEY_PREFIX, defaultIdempotencyKey } from "./job-key.ts";

function settings(path: string, patch: Partial<SubmitSettings> = {}): SubmitSettings {
  return {
    model: requireModel("mnist-8"),
    input: { kind: "images", path },
    shardSize: 100,
    maxPriceMsat: 1_000,
    deadlineMs: 60_000,
    output: "/tmp/out.jsonl",
    ...patch,
  };
}

test("the same content and options give the same key, wherever the file lies", async () => {
  using dir = tempDir();
  const a = join(dir.path, "a.bin");
  const b = join(dir.path, "b.bin");
  writeFileSync(a, "same bytes");
  writeFileSync(b, "same bytes");
  const key = await defaultIdempotencyKey(settings(a));
  expect(key.startsWith(DERIVED_KEY_PREFIX)).toBe(true);
  expect(key.length).toBeLessThanOrEqual(128);
  expect(await defaultIdempotencyKey(settings(a))).toBe(key);
  expect(await defaultIdempotencyKey(settings(b))).toBe(key);
  // What does not change the work leaves the key alone.
  expect(await defaultIdempotencyKey(settings(a, { deadlineMs: 5, output: "/x", aggregator: "12D3KooWx" }))).toBe(key);
});

test("different content or options give a different key", async () => {
  using dir = tempDir();
  const a = join(dir.path, "a.bin");
  const c = join(dir.path, "c.bin");
  writeFileSync(a, "same bytes");
  writeFileSync(c, "same bytez");
  const key = await defaultIdempotencyKey(settings(a));
  const others = await Promise.all([
    defaultIdempotencyKey(settings(c)),
    defaultIdempotencyKey(settings(a, { shardSize: 101 })),
    defaultIdempotencyKey(settings(a, { shardSize: undefined, shardCount: 100 })),
    defaultIdempotencyKey(settings(a, { redundancy: 3 })),
    defaultIdempotencyKey(settings(a, { maxPriceMsat: 1_001 })),
    defaultIdempotencyKey(settings(a, { model: requireModel("squeezenet") })),
    defaultIdempotencyKey(settings(a, { input: { kind: "prompts", path: a }, maxTokens: 4 })),
  ]);
  expect(new Set([key, ...others]).size).toBe(others.length + 1);
});

test("a folder is hashed by its files' names and contents", async () => {
  using dir = tempDir();
  const folder = join(dir.path, "imgs");
  mkdirSync(folder);
  writeFileSync(join(folder, "1.png"), "one");
  writeFileSync(join(folder, "2.png"), "two");
  const key = await defaultIdempotencyKey(settings(folder));
  expect(await defaultIdempotencyKey(settings(folder))).toBe(key);
  writeFileSync(join(folder, "2.png"), "TWO");
  const changed = await defaultIdempotencyKey(settings(folder));
  expect(changed).not.toBe(key);
  writeFileSync(join(folder, "3.png"), "three");
  expect(await defaultIdempotencyKey(settings(folder))).not.toBe(changed);
});

test("a missing input is FileNotFoundError", async () => {
  const err = await defaultIdempotencyKey(settings("/nonexistent/input")).catch((e: Error) => e);
  expect((err as Error).name).toBe("FileNotFoundError");
});
