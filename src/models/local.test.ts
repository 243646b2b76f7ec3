import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SHARED_MODELS, STORIES_GGUF, STORIES_SHA256, tempDir } from "../../test/helpers/paths.ts";
import { rangeServer } from "../../test/helpers/range-server.ts";
import { loadConfig } from "../config/index.ts";
import { Store } from "../store/db.ts";
import type { DownloadProgress } from "./download.ts";
import { resolveLocalModel } from "./local.ts";
import { verifiedRecord } from "./verified.ts";

function setup(home: string, mirror = SHARED_MODELS) {
  const config = loadConfig({ env: { INFERNET_HOME: home, INFERNET_MODEL_MIRROR: mirror } });
  const store = Store.open(home);
  return { config, store, [Symbol.dispose]: () => store.close() };
}

async function caught(p: Promise<unknown>): Promise<Error & { hint?: string }> {
  return (await p.then(
    () => new Error("expected a failure"),
    (e: unknown) => e,
  )) as Error & { hint?: string };
}

describe("resolveLocalModel", () => {
  test("a catalog name is pulled from the mirror once, verified and recorded", async () => {
    using dir = tempDir();
    using deps = setup(dir.path);
    const events: DownloadProgress[] = [];
    const m = await resolveLocalModel("stories", { ...deps, onProgress: (p) => events.push(p) });
    const path = join(deps.config.modelsDir, "stories260k", "stories260K.gguf");
    expect(m).toMatchObject({ name: "stories260k", runtime: "llama", path, sha256: STORIES_SHA256, chat: false });
    expect(m.entry?.name).toBe("stories260k");
    expect(readFileSync(path).equals(readFileSync(STORIES_GGUF))).toBe(true);
    expect(verifiedRecord(deps.store, path)?.sha256).toBe(STORIES_SHA256);
    expect(events.at(-1)).toMatchObject({ phase: "verify", source: join(SHARED_MODELS, "stories260K.gguf") });

    const again: DownloadProgress[] = [];
    expect((await resolveLocalModel("stories260k", { ...deps, onProgress: (p) => again.push(p) })).path).toBe(path);
    expect(again).toEqual([]);
  });

  test("a model with companion files gets them as extras", async () => {
    using dir = tempDir();
    using deps = setup(dir.path);
    const m = await resolveLocalModel("squeezenet", deps);
    expect(m.runtime).toBe("onnx");
    expect(m.extras?.labels).toBe(join(deps.config.modelsDir, "squeezenet1.1", "squeezenet1.1-labels.json"));
    expect(Object.keys(JSON.parse(readFileSync(m.extras?.labels ?? "", "utf8")))).toHaveLength(1000);
  });

  test("a cached file changed behind our back is detected, deleted and fetched again", async () => {
    using dir = tempDir();
    using deps = setup(dir.path);
    const { path } = await resolveLocalModel("mnist", deps);
    const bytes = readFileSync(path);
    bytes[100] = (bytes[100] ?? 0) ^ 0xff;
    writeFileSync(path, bytes);
    const events: DownloadProgress[] = [];
    const m = await resolveLocalModel("mnist", { ...deps, onProgress: (p) => events.push(p) });
    expect(events.some((e) => e.phase === "download")).toBe(true);
    expect(new Bun.CryptoHasher("sha256").update(readFileSync(m.path)).digest("hex")).toBe(m.sha256 ?? "");
  });

  test("a file already in the models folder is hashed once and adopted without a download", async () => {
    using dir = tempDir();
    using deps = setup(dir.path, join(dir.path, "empty-mirror"));
    const path = join(deps.config.modelsDir, "stories260k", "stories260K.gguf");
    mkdirSync(join(deps.config.modelsDir, "stories260k"), { recursive: true });
    writeFileSync(path, readFileSync(STORIES_GGUF));
    const m = await resolveLocalModel("stories260k", deps);
    expect(m.path).toBe(path);
    expect(verifiedRecord(deps.store, path)?.size).toBe(statSync(path).size);
  });

  test("a mirror URL serves catalog models by file name", async () => {
    await using server = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    using dir = tempDir();
    using deps = setup(dir.path, server.url);
    const m = await resolveLocalModel("stories260k", deps);
    expect(m.sha256).toBe(STORIES_SHA256);
    expect(server.requests.map((r) => r.path)).toEqual(["/stories260K.gguf"]);
  });

  test("an unknown name is an UnknownModelError with a suggestion", async () => {
    using dir = tempDir();
    using deps = setup(dir.path);
    const err = await caught(resolveLocalModel("lama3", deps));
    expect(err.name).toBe("UnknownModelError");
    expect(err.hint).toContain('"llama3"');
  });

  test("a path is used in place; a catalog model's sha256 brings its settings and labels beside it", async () => {
    using dir = tempDir();
    using deps = setup(dir.path);
    const gguf = await resolveLocalModel(STORIES_GGUF, deps);
    expect(gguf).toMatchObject({ name: "stories260k", runtime: "llama", path: STORIES_GGUF, sha256: STORIES_SHA256 });
    const onnx = await resolveLocalModel(join(SHARED_MODELS, "squeezenet1.1-fp16.onnx"), deps);
    expect(onnx.extras?.labels).toBe(join(SHARED_MODELS, "squeezenet1.1-labels.json"));
    expect(existsSync(deps.config.modelsDir)).toBe(false);
  });

  test("an unknown file by path keeps its file name and gets hashed", async () => {
    using dir = tempDir();
    using deps = setup(dir.path);
    const path = join(dir.path, "custom.gguf");
    writeFileSync(path, "GGUF not really");
    const m = await resolveLocalModel(path, deps);
    expect(m).toMatchObject({ name: "custom.gguf", runtime: "llama", path });
    expect(m.sha256).toBe(new Bun.CryptoHasher("sha256").update("GGUF not really").digest("hex"));
    expect(m.entry).toBeUndefined();
  });

  test("path errors: missing file, directory, unknown extension", async () => {
    using dir = tempDir();
    using deps = setup(dir.path);
    const missing = await caught(resolveLocalModel(join(dir.path, "nope.gguf"), deps));
    expect(missing.name).toBe("FileNotFoundError");
    expect(missing.message).toContain("nope.gguf does not exist");
    mkdirSync(join(dir.path, "folder.onnx"));
    expect((await caught(resolveLocalModel(join(dir.path, "folder.onnx"), deps))).name).toBe("FileNotFoundError");
    writeFileSync(join(dir.path, "weights.bin"), "x");
    const bin = await caught(resolveLocalModel(join(dir.path, "weights.bin"), deps));
    expect(bin.name).toBe("InvalidInputError");
    expect(bin.hint).toContain(".gguf");
  });
});
