import { beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, CLI, infernet } from "./helpers/cli.ts";
import { SHARED_MODELS, STORIES_GGUF, STORIES_GREEDY_PREFIX, tempDir } from "./helpers/paths.ts";

/** `infernet run` on the real stories260k, end to end in child processes, model from the mirror. */
const dir = tempDir("infernet-cli-run-");
const home = join(dir.path, "home");

beforeAll(async () => {
  // First run pulls from the mirror and calibrates threads; later tests reuse the same home.
  const r = await infernet(["run", "stories260k", "Once upon a time", "--max-tokens", "8"], { home });
  expect(r.code).toBe(0);
});

describe("infernet run stories260k", () => {
  test("greedy output is deterministic and begins with the known continuation", async () => {
    const a = await infernet(["run", "stories260k", "Once upon a time"], { home });
    const b = await infernet(["run", "stories", "Once upon a time"], { home });
    expect(a.code).toBe(0);
    expect(a.stdout.startsWith(STORIES_GREEDY_PREFIX)).toBe(true);
    expect(b.stdout).toBe(a.stdout);
    expect(a.stderr).toBe("");
  });

  test("--json gives the text, usage and finish reason", async () => {
    const r = await infernet(["run", "stories260k", "Once upon a time", "--max-tokens", "20", "--json"], { home });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.text.startsWith(", there was a little girl named Lily")).toBe(true);
    expect(out.usage.outputTokens).toBe(20);
    expect(out.finishReason).toBe("length");
    expect(out.sha256).toBe("270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
  });

  test("reads the prompt from stdin and honours stop strings", async () => {
    const r = await infernet(["run", "stories260k", "--stop", "Lily"], { home, stdin: "Once upon a time" });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(", there was a little girl named\n");
  });

  test("tokens reach stdout while generation is still running (Ctrl-C stops it)", async () => {
    const proc = Bun.spawn([BUN, CLI, "run", "stories260k", "Once upon a time", "--max-tokens", "500"], {
      env: { ...process.env, INFERNET_HOME: home, INFERNET_MODEL_MIRROR: SHARED_MODELS },
      stdout: "pipe",
      stderr: "pipe",
    });
    const reader = proc.stdout.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    // If output were held until the end, the process would be done by now and could not be interrupted.
    proc.kill("SIGINT");
    let rest = "";
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      rest += new TextDecoder().decode(chunk.value);
    }
    const code = await proc.exited;
    const stderr = await new Response(proc.stderr).text();
    expect(code).toBe(130);
    expect(stderr.trim()).toBe("infernet: interrupted");
    const text = new TextDecoder().decode(first.value) + rest;
    expect(text.length).toBeGreaterThan(0);
    expect(text.split(" ").length).toBeLessThan(400);
  });

  test("a path to a .gguf file runs without the catalog", async () => {
    const r = await infernet(["run", STORIES_GGUF, "Once upon a time", "--max-tokens", "16"], { home });
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith(", there was a little girl named Lily")).toBe(true);
  });
});

describe("infernet run: user mistakes get one clear line and an exit code", () => {
  const cases: [string, string[], number, RegExp][] = [
    ["unknown model", ["run", "storiez260k", "hi"], 3, /unknown model "storiez260k".*did you mean "stories260k"/],
    ["no model", ["run"], 2, /which model/],
    ["empty prompt", ["run", "stories260k", ""], 4, /prompt is empty/],
    ["missing file", ["run", "./nope/model.gguf", "hi"], 3, /nope\/model\.gguf/],
    ["bad flag", ["run", "stories260k", "hi", "--frobnicate"], 2, /Unknown option '--frobnicate'/],
    ["bad number", ["run", "stories260k", "hi", "--max-tokens", "lots"], 2, /--max-tokens must be a whole number/],
    ["bad temperature", ["run", "stories260k", "hi", "--temperature=-1"], 2, /--temperature must be a number/],
    ["bad gpu", ["run", "stories260k", "hi", "--gpu", "tpu"], 8, /invalid value "tpu" for flag --gpu/],
    ["prompt to an ONNX model", ["run", "mnist-8", "hello"], 2, /ONNX model; it takes --input/],
    ["ambiguous flag value", ["run", "stories260k", "hi", "--seed", "-3"], 2, /Option '--seed' argument is ambiguous/],
  ];
  for (const [name, args, code, pattern] of cases) {
    test(name, async () => {
      const r = await infernet(args, { home });
      expect(r.code).toBe(code);
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).not.toContain("    at ");
    });
  }

  test("--deadline: a run not done in time stops with exit code 124", async () => {
    const r = await infernet(["run", "stories260k", "Once upon a time", "--max-tokens", "2000", "--deadline", "0.05"], {
      home,
    });
    expect(r.code).toBe(124);
    expect(r.stderr.trim()).toBe("infernet: the deadline passed");
  });

  test("a corrupted GGUF file", async () => {
    const bad = join(dir.path, "corrupt.gguf");
    const bytes = readFileSync(STORIES_GGUF);
    writeFileSync(bad, bytes.subarray(0, bytes.length / 3));
    const r = await infernet(["run", bad, "Once"], { home });
    expect(r.code).toBe(6);
    expect(r.stderr).toMatch(/cannot load .* as a GGUF model/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  test("INFERNET_HOME whose parent does not exist", async () => {
    const r = await infernet(["run", "stories260k", "hi"], { home: join(dir.path, "no/such/parent/home") });
    expect(r.code).toBe(8);
    expect(r.stderr).toMatch(/parent of INFERNET_HOME .* does not exist/);
  });

  test("no mirror and no network: download error names what was tried", async () => {
    using other = tempDir();
    const r = await infernet(["run", "stories260k", "hi"], {
      home: other.path,
      env: { INFERNET_MODEL_MIRROR: join(other.path, "empty-mirror") },
    });
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/stories260K\.gguf/);
    expect(r.stderr).toMatch(/INFERNET_MODEL_MIRROR/);
  });
});
