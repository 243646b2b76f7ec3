import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { finish, infernet, spawnInfernet } from "./helpers/cli.ts";
import { SHARED_MODELS, STORIES_GGUF, STORIES_SHA256, tempDir } from "./helpers/paths.ts";
import { rangeServer } from "./helpers/range-server.ts";

/** `infernet pull` and `infernet models`, end to end in child processes with a fresh INFERNET_HOME each. */
const STORIES_SIZE = readFileSync(STORIES_GGUF).length;

function spawnPull(home: string, mirror: string, ...args: string[]) {
  return spawnInfernet(["pull", ...args], { home, env: { INFERNET_MODEL_MIRROR: mirror } });
}

/** Waits (up to 10 s) for a condition a child process brings about. */
async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the child process");
    await Bun.sleep(10);
  }
}

describe("infernet pull", () => {
  test("pulls from the mirror folder, verifies, and says so; a second pull finds it present", async () => {
    using dir = tempDir();
    const first = await infernet(["pull", "stories260k"], { home: dir.path });
    expect(first.code).toBe(0);
    const path = join(dir.path, "models", "stories260k", "stories260K.gguf");
    expect(first.stdout).toBe(`stories260k: ready, 1.19 MB verified, ${path}\n`);
    expect(first.stderr).toStartWith(
      `stories260k: stories260K.gguf 1.19 MB verified (from ${join(SHARED_MODELS, "stories260K.gguf")}, `,
    );
    expect(readFileSync(path).equals(readFileSync(STORIES_GGUF))).toBe(true);

    const second = await infernet(["pull", "stories"], { home: dir.path });
    expect(second).toEqual({
      code: 0,
      stdout: `stories260k: already present, 1.19 MB verified, ${path}\n`,
      stderr: "",
    });
  });

  test("--json reports every file, where it came from and how much was fetched", async () => {
    using dir = tempDir();
    const r = await infernet(["pull", "squeezenet", "mnist", "--json"], { home: dir.path });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { model: string; status: string; files: { role: string; source: string }[] }[];
    expect(out.map((m) => [m.model, m.status])).toEqual([
      ["squeezenet1.1", "downloaded"],
      ["mnist-8", "downloaded"],
    ]);
    expect(out[0]?.files.map((f) => f.role)).toEqual(["model", "labels"]);
    expect(out[0]?.files[1]?.source).toBe(join(SHARED_MODELS, "squeezenet1.1-labels.json"));
  });

  test("a mirror URL works, and Ctrl-C leaves a partial that the next pull resumes with a Range request", async () => {
    await using server = rangeServer({ "/m/stories260K.gguf": STORIES_GGUF });
    server.behaviour.chunkBytes = 16 * 1024;
    server.behaviour.chunkDelayMs = 20;
    using dir = tempDir();
    const proc = spawnPull(dir.path, `${server.url}/m`, "stories260k");
    await until(() => server.requests.length > 0);
    await Bun.sleep(400);
    proc.kill("SIGINT");
    const stopped = await finish(proc);
    expect(stopped.code).toBe(130);
    expect(stopped.stderr).toContain("infernet: interrupted");
    const dest = join(dir.path, "models", "stories260k", "stories260K.gguf");
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(`${dest}.lock`)).toBe(false);
    const state = JSON.parse(readFileSync(`${dest}.partial.json`, "utf8")) as { parts: { done: number }[] };
    const had = state.parts[0]?.done ?? 0;
    expect(had).toBeGreaterThan(0);
    expect(had).toBeLessThan(STORIES_SIZE);

    server.behaviour.chunkDelayMs = 0;
    const resumed = await finish(spawnPull(dir.path, `${server.url}/m`, "stories260k", "--json"));
    expect(resumed.code).toBe(0);
    const [result] = JSON.parse(resumed.stdout) as { files: { resumedFrom: number; transferred: number }[] }[];
    expect(result?.files[0]).toMatchObject({ resumedFrom: had, transferred: STORIES_SIZE - had });
    expect(server.requests.at(-1)).toMatchObject({ status: 206, range: `bytes=${had}-${STORIES_SIZE - 1}` });
    expect(resumed.stderr).toContain(`resumed at`);
  });

  test("two processes pulling the same model at once download it once", async () => {
    await using server = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    server.behaviour.chunkBytes = 64 * 1024;
    server.behaviour.chunkDelayMs = 50;
    using dir = tempDir();
    const a = spawnPull(dir.path, server.url, "stories260k");
    await until(() => server.requests.length > 0);
    const b = spawnPull(dir.path, server.url, "stories260k");
    const [ra, rb] = await Promise.all([finish(a), finish(b)]);
    expect([ra.code, rb.code]).toEqual([0, 0]);
    expect(server.requests).toHaveLength(1);
    expect(rb.stderr).toContain("stories260k: waiting for another infernet process downloading stories260K.gguf");
    expect(rb.stdout).toContain("stories260k: already present");
    const dest = join(dir.path, "models", "stories260k", "stories260K.gguf");
    expect(new Bun.CryptoHasher("sha256").update(readFileSync(dest)).digest("hex")).toBe(STORIES_SHA256);
  });

  test("user mistakes: no model named, an unknown model", async () => {
    using dir = tempDir();
    const none = await infernet(["pull"], { home: dir.path });
    expect(none.code).toBe(2);
    expect(none.stderr).toBe("infernet: pull: name at least one model (`infernet models` lists the catalog)\n");
    const unknown = await infernet(["pull", "lama3"], { home: dir.path });
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain('unknown model "lama3" (did you mean "llama3"');
  });
});

describe("infernet models", () => {
  test("--json lists the catalog with what is downloaded and where", async () => {
    using dir = tempDir();
    expect((await infernet(["pull", "stories260k"], { home: dir.path })).code).toBe(0);
    const r = await infernet(["models", "--json"], { home: dir.path });
    expect(r.code).toBe(0);
    const models = JSON.parse(r.stdout) as { name: string; aliases: string[]; downloaded: boolean; path: string }[];
    const stories = models.find((m) => m.name === "stories260k");
    expect(stories).toMatchObject({
      downloaded: true,
      path: join(dir.path, "models", "stories260k", "stories260K.gguf"),
    });
    expect(models.find((m) => m.aliases.includes("llama3"))).toMatchObject({ name: "llama3.2-1b", downloaded: false });
    expect(models.map((m) => m.name)).toEqual(expect.arrayContaining(["mnist-8", "squeezenet1.1", "qwen2.5-0.5b"]));
  });

  test("the table has one row per model with size, licence and download state", async () => {
    using dir = tempDir();
    const r = await infernet(["models"], { home: dir.path });
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME\s+ALIASES\s+RUNTIME\s+TASK\s+SIZE\s+LICENCE\s+DOWNLOADED$/);
    expect(lines.find((l) => l.startsWith("llama3.2-1b "))).toMatch(
      /llama3, llama3\.2.*llama\s+text-generation \(chat\)\s+807\.7 MB\s+Llama 3\.2 Community License\s+no$/,
    );
    expect(lines.at(-1)).toBe(`Models directory: ${join(dir.path, "models")}`);
  });
});
