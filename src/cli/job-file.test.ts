import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import {
  DEFAULT_DEADLINE_MS,
  DEFAULT_MAX_PRICE_MSAT,
  defaultOutput,
  parseDuration,
  parseJobFile,
  readJobFile,
  resolveSettings,
} from "./job-file.ts";

const nameOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as Error).name;
  }
  return undefined;
};
const messageOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  return "";
};

describe("parseDuration", () => {
  test("units and combinations", () => {
    expect(parseDuration("90s")).toBe(90_000);
    expect(parseDuration("30m")).toBe(1_800_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("2d")).toBe(172_800_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("1.5h")).toBe(5_400_000);
  });
  test("anything else is not a duration", () => {
    for (const bad of ["", "30", "m", "5x", "-1h", "1h 30m", "h1"]) expect(parseDuration(bad)).toBeUndefined();
  });
});

describe("parseJobFile", () => {
  test("a full file: paths become absolute, relative to the file", () => {
    const file = parseJobFile(
      JSON.stringify({
        model: "mnist-8",
        inputs: "data/images.gz",
        shardSize: 500,
        redundancy: 2,
        maxPriceMsat: 5_000,
        deadline: "30m",
        aggregator: "12D3KooWexample",
        output: "out.jsonl",
        key: "my-key",
      }),
      "/jobs/one/job.json",
    );
    expect(file).toEqual({
      model: "mnist-8",
      inputs: "/jobs/one/data/images.gz",
      shardSize: 500,
      redundancy: 2,
      maxPriceMsat: 5_000,
      deadline: "30m",
      aggregator: "12D3KooWexample",
      output: "/jobs/one/out.jsonl",
      key: "my-key",
    });
  });

  test("prompts with shards and maxTokens", () => {
    const file = parseJobFile(
      '{"model": "stories260k", "prompts": "/abs/p.jsonl", "shards": 4, "maxTokens": 64}',
      "job.json",
    );
    expect(file).toEqual({ model: "stories260k", prompts: "/abs/p.jsonl", shards: 4, maxTokens: 64 });
  });

  const bad: [string, unknown, string][] = [
    ["not JSON", "{", "not valid JSON"],
    ["no model", { inputs: "x" }, '"model"'],
    ["empty model", { model: "", inputs: "x" }, '"model"'],
    ["no input", { model: "mnist-8" }, "exactly one"],
    ["both inputs and prompts", { model: "mnist-8", inputs: "x", prompts: "y" }, "exactly one"],
    ["shard size zero", { model: "mnist-8", inputs: "x", shardSize: 0 }, '"shardSize"'],
    ["fractional shard size", { model: "mnist-8", inputs: "x", shardSize: 1.5 }, '"shardSize"'],
    ["shards too many", { model: "mnist-8", inputs: "x", shards: 1_000_000 }, '"shards"'],
    ["both shardSize and shards", { model: "mnist-8", inputs: "x", shardSize: 5, shards: 5 }, "not both"],
    ["redundancy zero", { model: "mnist-8", inputs: "x", redundancy: 0 }, '"redundancy"'],
    ["redundancy too high", { model: "mnist-8", inputs: "x", redundancy: 99 }, '"redundancy"'],
    ["maxTokens zero", { model: "stories260k", prompts: "x", maxTokens: 0 }, '"maxTokens"'],
    ["negative price", { model: "mnist-8", inputs: "x", maxPriceMsat: -1 }, '"maxPriceMsat"'],
    ["price as text", { model: "mnist-8", inputs: "x", maxPriceMsat: "5" }, '"maxPriceMsat"'],
    ["bad deadline", { model: "mnist-8", inputs: "x", deadline: "soon" }, '"deadline"'],
    ["empty aggregator", { model: "mnist-8", inputs: "x", aggregator: "" }, '"aggregator"'],
    ["empty output", { model: "mnist-8", inputs: "x", output: "" }, '"output"'],
    ["unknown field", { model: "mnist-8", inputs: "x", shardsize: 5 }, "shardsize"],
    ["not an object", [1, 2], "job file"],
  ];
  for (const [what, value, says] of bad) {
    test(`refuses ${what} with one clear line`, () => {
      const text = typeof value === "string" ? value : JSON.stringify(value);
      expect(nameOf(() => parseJobFile(text, "job.json"))).toBe("InvalidInputError");
      const message = messageOf(() => parseJobFile(text, "job.json"));
      expect(message).toContain("job file job.json");
      expect(message).toContain(says);
      expect(message).not.toContain("\n");
    });
  }

  test("readJobFile: a missing file is FileNotFoundError, a folder InvalidInputError", async () => {
    using dir = tempDir();
    expect(await readJobFile(join(dir.path, "nope.json")).catch((e: Error) => e.name)).toBe("FileNotFoundError");
    expect(await readJobFile(dir.path).catch((e: Error) => e.name)).toBe("InvalidInputError");
  });
});

describe("resolveSettings", () => {
  test("flags override the file; defaults fill the rest", async () => {
    using dir = tempDir();
    const input = join(dir.path, "digits.idx.gz");
    writeFileSync(input, "x");
    const other = join(dir.path, "other.gz");
    writeFileSync(other, "x");
    const file = { model: "mnist-8", inputs: input, shardSize: 100, redundancy: 3 };
    const s = await resolveSettings(file, { inputs: other, shards: 4 }, dir.path);
    expect(s.model.name).toBe("mnist-8");
    expect(s.input).toEqual({ kind: "images", path: other });
    expect(s.shardCount).toBe(4);
    expect(s.shardSize).toBeUndefined();
    expect(s.redundancy).toBe(3);
    expect(s.maxPriceMsat).toBe(DEFAULT_MAX_PRICE_MSAT);
    expect(s.deadlineMs).toBe(DEFAULT_DEADLINE_MS);
    expect(s.output).toBe(join(dir.path, "other.results.jsonl"));
  });

  test("a prompts flag replaces the file's inputs", async () => {
    using dir = tempDir();
    const prompts = join(dir.path, "p.jsonl");
    writeFileSync(prompts, '{"prompt":"x"}\n');
    const s = await resolveSettings(
      { model: "stories260k", inputs: "/nope" },
      { prompts, maxTokens: 8, deadline: "90s" },
      dir.path,
    );
    expect(s.input).toEqual({ kind: "prompts", path: prompts });
    expect(s.maxTokens).toBe(8);
    expect(s.deadlineMs).toBe(90_000);
  });

  const refusals: [string, Record<string, unknown>, string][] = [
    ["no model", { inputs: "in" }, "UsageError"],
    ["an unknown model", { model: "mnist-9000", inputs: "in" }, "UnknownModelError"],
    ["no input", { model: "mnist-8" }, "UsageError"],
    ["prompts for an ONNX model", { model: "mnist-8", prompts: "in" }, "UsageError"],
    ["images for a language model", { model: "stories260k", inputs: "in" }, "UsageError"],
    ["max tokens for images", { model: "mnist-8", inputs: "in", maxTokens: 5 }, "UsageError"],
    ["a missing input", { model: "mnist-8", inputs: "missing" }, "FileNotFoundError"],
    ["a deadline too short", { model: "mnist-8", inputs: "in", deadline: "10ms" }, "UsageError"],
    ["a deadline too long", { model: "mnist-8", inputs: "in", deadline: "30d" }, "UsageError"],
    ["a verification floor above the redundancy", { model: "mnist-8", inputs: "in", minVerification: 3 }, "UsageError"],
  ];
  for (const [what, flags, name] of refusals) {
    test(`refuses ${what}`, async () => {
      using dir = tempDir();
      mkdirSync(join(dir.path, "in"));
      const err = await resolveSettings({}, flags, dir.path).catch((e: Error) => e);
      expect((err as Error).name).toBe(name);
    });
  }

  test("defaultOutput drops one extension", () => {
    expect(defaultOutput("/a/prompts.jsonl")).toBe("prompts.results.jsonl");
    expect(defaultOutput("/a/t10k-images-idx3-ubyte.gz")).toBe("t10k-images-idx3-ubyte.results.jsonl");
    expect(defaultOutput("/a/digits")).toBe("digits.results.jsonl");
    expect(defaultOutput("/a/.hidden")).toBe(".hidden.results.jsonl");
  });
});
