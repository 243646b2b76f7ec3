import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SHARED_MODELS } from "../../test/helpers/paths.ts";
import { catalog, findModel, modelFile, requireModel } from "./catalog.ts";

describe("catalog", () => {
  test("names, aliases and file names are unique", () => {
    const keys = catalog().flatMap((m) => [m.name, ...m.aliases.map((a) => a.toLowerCase())]);
    expect(new Set(keys).size).toBe(keys.length);
    const files = catalog().flatMap((m) => m.files.map((f) => f.file));
    expect(new Set(files).size).toBe(files.length);
  });

  test("llama3 is an alias of a Llama 3.x Instruct chat GGUF", () => {
    const entry = requireModel("llama3");
    expect(entry.name).toBe("llama3.2-1b");
    expect(entry).toMatchObject({ runtime: "llama", chat: true, quantization: "Q4_K_M", contextLength: 131072 });
    expect(modelFile(entry)).toMatchObject({
      file: "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
      size: 807_694_464,
      sha256: "6f85a640a97cf2bf5b8e764087b1e83da0fdb51d7c9fab7d0fece9385611df83",
    });
  });

  test("chat models say how big they are, how long their context is, and under which licence", () => {
    const chat = catalog().filter((m) => m.chat);
    expect(chat.length).toBeGreaterThanOrEqual(4);
    for (const m of chat) {
      expect(m.runtime).toBe("llama");
      expect(m.contextLength).toBeGreaterThan(0);
      expect(m.parameters).toBeTruthy();
      expect(m.quantization).toBeTruthy();
      expect(m.licence).toBeTruthy();
    }
  });

  test("every source is https and GGUF files end in .gguf, ONNX in .onnx", () => {
    for (const m of catalog()) {
      for (const f of m.files) {
        for (const url of f.sources) expect(url).toStartWith("https://");
        if (f.role === "model") expect(f.file.endsWith(m.runtime === "llama" ? ".gguf" : ".onnx")).toBe(true);
      }
    }
  });

  test("the files in the shared mirror have the catalog's size and sha256", async () => {
    for (const name of ["stories260k", "mnist-8", "squeezenet1.1"]) {
      for (const f of requireModel(name).files) {
        const bytes = readFileSync(join(SHARED_MODELS, f.file));
        expect(bytes.length).toBe(f.size);
        expect(new Bun.CryptoHasher("sha256").update(bytes).digest("hex")).toBe(f.sha256);
      }
    }
  });

  test("lookups ignore case; an unknown name suggests close ones", () => {
    expect(findModel("  LLAMA3 ")?.name).toBe("llama3.2-1b");
    expect(findModel("nope")).toBeUndefined();
    let err: (Error & { hint?: string }) | undefined;
    try {
      requireModel("storis");
    } catch (e) {
      err = e as Error & { hint?: string };
    }
    expect(err?.name).toBe("UnknownModelError");
    expect(err?.message).toBe('unknown model "storis"');
    expect(err?.hint).toContain('did you mean "stories"');
  });
});
