import { describe, expect, test } from "bun:test";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { STORIES_GGUF, STORIES_GREEDY_PREFIX, STORIES_SHA256, tempDir } from "../../../test/helpers/paths.ts";
import { sqliteCalibrationStore } from "../../store/calibrations.ts";
import { Store } from "../../store/db.ts";
import type { InferenceEvent, LocalModel } from "../engine.ts";
import type { CalibrationKey, CalibrationResult, CalibrationStore } from "./calibrate.ts";
import { createLlamaEngine } from "./engine.ts";

// Real llama.cpp on the real stories260K model. One thread: measured fastest for this model here.
const stories: LocalModel = { name: "stories260k", runtime: "llama", path: STORIES_GGUF, sha256: STORIES_SHA256 };

async function collect(events: AsyncIterable<InferenceEvent>) {
  let text = "";
  let tokens = 0;
  let done: Extract<InferenceEvent, { type: "done" }> | undefined;
  for await (const e of events) {
    if (e.type === "token") {
      text += e.text;
      tokens += 1;
    } else if (e.type === "done") done = e;
  }
  return { text, tokens, done };
}

describe("llama engine (stories260k)", () => {
  test("greedy output is the known continuation, identical on every run", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    const a = await collect(engine.run(stories, { kind: "generate", prompt: "Once upon a time", maxTokens: 64 }));
    const b = await collect(engine.run(stories, { kind: "generate", prompt: "Once upon a time", maxTokens: 64 }));
    expect(a.text.startsWith(STORIES_GREEDY_PREFIX)).toBe(true);
    expect(b.text).toBe(a.text);
    expect(a.done?.finishReason).toBe("length");
    expect(a.done?.usage.outputTokens).toBe(64);
    expect(a.done?.usage.inputTokens).toBeGreaterThan(0);
  });

  test("tokens stream while generation is still running", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    const controller = new AbortController();
    let received = 0;
    let error: unknown;
    try {
      for await (const e of engine.run(
        stories,
        { kind: "generate", prompt: "Once upon a time", maxTokens: 400 },
        { signal: controller.signal },
      )) {
        if (e.type === "token") {
          received += 1;
          // Abort on the first token: if output were buffered until the end, all 400 would already exist.
          controller.abort();
        }
      }
    } catch (err) {
      error = err;
    }
    expect((error as Error).name).toBe("AbortedError");
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(400);
  });

  test("a generation resumed from any point with the tokens so far gives the uninterrupted text", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    const chunks: { text: string; tokens: number[] }[] = [];
    for await (const e of engine.run(stories, { kind: "generate", prompt: "Once upon a time", maxTokens: 100 })) {
      if (e.type === "token") chunks.push({ text: e.text, tokens: e.tokens });
    }
    const full = chunks.map((c) => c.text).join("");
    expect(chunks.reduce((n, c) => n + c.tokens.length, 0)).toBe(100);
    for (const cut of [1, 2, 5, 33, 99]) {
      const head = chunks.slice(0, cut);
      const resume = { tokens: head.flatMap((c) => c.tokens), text: head.map((c) => c.text).join("") };
      const rest = await collect(
        engine.run(stories, {
          kind: "generate",
          prompt: "Once upon a time",
          maxTokens: 100 - resume.tokens.length,
          resume,
        }),
      );
      expect(resume.text + rest.text).toBe(full);
    }
  });

  test("stop strings end the output before the stop text", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    const r = await collect(engine.run(stories, { kind: "generate", prompt: "Once upon a time", stop: ["Lily"] }));
    expect(r.text).toBe(", there was a little girl named");
    expect(r.done?.finishReason).toBe("stop");
  });

  test("seeded sampling is reproducible and differs from greedy", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    const req = { kind: "generate", prompt: "Once upon a time", maxTokens: 48, temperature: 1, seed: 7 } as const;
    const a = await collect(engine.run(stories, req));
    const b = await collect(engine.run(stories, req));
    const other = await collect(engine.run(stories, { ...req, seed: 8 }));
    const greedy = await collect(engine.run(stories, { ...req, temperature: 0 }));
    expect(b.text).toBe(a.text);
    expect([other.text, greedy.text]).not.toContain(a.text);
  });

  test("chat mode formats the prompt through a chat template", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    const plain = await collect(engine.run(stories, { kind: "generate", prompt: "Hello", maxTokens: 16 }));
    const chat = await collect(engine.run(stories, { kind: "generate", prompt: "Hello", maxTokens: 16, chat: true }));
    // The template wraps the prompt in role markers, so the model reads more tokens than the bare prompt.
    expect(chat.done!.usage.inputTokens).toBeGreaterThan(plain.done!.usage.inputTokens + 2);
    expect(chat.done?.usage.outputTokens).toBeGreaterThan(0);
    expect(chat.text).not.toBe(plain.text);
  });

  test("a chat carries its earlier turns: the model reads them, the same conversation gives the same answer", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    const ask = { kind: "generate" as const, prompt: "And then?", maxTokens: 12, chat: true, system: "Tell stories." };
    const history = [
      { role: "user" as const, content: "Once upon a time" },
      { role: "assistant" as const, content: "there was a little girl named Lily." },
    ];
    const alone = await collect(engine.run(stories, ask));
    const a = await collect(engine.run(stories, { ...ask, history }));
    const b = await collect(engine.run(stories, { ...ask, history }));
    expect(b.text).toBe(a.text);
    // Both earlier messages (about 15 tokens) and their role markers were read.
    expect(a.done!.usage.inputTokens).toBeGreaterThan(alone.done!.usage.inputTokens + 15);
    await expect(collect(engine.run(stories, { ...ask, chat: false, history }))).rejects.toThrow(/chat/);
  });

  test("embeddings: one vector per input, the model's width, the same text the same vector", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    const events = [];
    for await (const e of engine.run(stories, {
      kind: "embed",
      inputs: ["Once upon a time", "The cat sat", "Once upon a time"],
    })) {
      events.push(e);
    }
    const [tensors, done] = events;
    if (tensors?.type !== "tensors" || done?.type !== "done") throw new Error("expected tensors then done");
    const e = tensors.outputs.embeddings!;
    expect(e.type).toBe("float32");
    // stories260k's embedding length is 64.
    expect(e.dims).toEqual([3, 64]);
    const row = (i: number) => Array.from(e.data.subarray(i * 64, (i + 1) * 64) as Float32Array);
    expect(row(2)).toEqual(row(0));
    expect(row(1)).not.toEqual(row(0));
    expect(done.usage).toMatchObject({ outputTokens: 3 });
    expect(done.usage.inputTokens).toBeGreaterThan(6);
    await expect(collect(engine.run(stories, { kind: "embed", inputs: [" "] }))).rejects.toThrow(/some text/);
  });

  test("logprobs: one per generated token, in order, its text the output's; greedy tokens are the likeliest", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    for (const chat of [false, true]) {
      let text = "";
      let ids: number[] = [];
      let logprobs: Extract<InferenceEvent, { type: "logprobs" }> | undefined;
      for await (const e of engine.run(stories, {
        kind: "generate",
        prompt: "Once upon a time",
        maxTokens: 24,
        chat,
        logprobs: 3,
      })) {
        if (e.type === "token") {
          text += e.text;
          ids = ids.concat(e.tokens);
        } else if (e.type === "logprobs") logprobs = e;
      }
      expect(logprobs?.tokens.map((t) => t.token)).toEqual(ids);
      expect(logprobs!.tokens.map((t) => t.text).join("")).toBe(text);
      for (const t of logprobs!.tokens) {
        expect(t.top).toHaveLength(3);
        expect(t.top[0]!.token).toBe(t.token);
        expect(t.logprob).toBe(t.top[0]!.logprob);
        expect(t.logprob).toBeLessThanOrEqual(0);
        expect(t.top[1]!.logprob).toBeLessThanOrEqual(t.top[0]!.logprob);
      }
    }
  });

  test("format: output constrained to a JSON schema parses and follows it; a schema it cannot use is refused", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    const schema = { type: "object", properties: { mood: { enum: ["happy", "sad"] } }, required: ["mood"] };
    const r = await collect(
      engine.run(stories, {
        kind: "generate",
        prompt: "Once upon a time",
        maxTokens: 32,
        format: { type: "json_schema", schema },
      }),
    );
    expect(["happy", "sad"]).toContain((JSON.parse(r.text) as { mood: string }).mood);
    await expect(
      collect(
        engine.run(stories, {
          kind: "generate",
          prompt: "x",
          format: { type: "json_schema", schema: { oneOf: 3 } },
        }),
      ),
    ).rejects.toThrow(/JSON schema cannot be used/);
    await expect(
      collect(
        engine.run(stories, {
          kind: "generate",
          prompt: "x",
          format: { type: "json_object" },
          resume: { tokens: [1], text: "{" },
        }),
      ),
    ).rejects.toThrow(/cannot be resumed/);
  });

  test("breaking out of the stream stops generation and frees the model for the next request", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    for await (const e of engine.run(stories, { kind: "generate", prompt: "Once upon a time", maxTokens: 400 })) {
      if (e.type === "token") break;
    }
    const next = await collect(engine.run(stories, { kind: "generate", prompt: "Once upon a time", maxTokens: 8 }));
    expect(next.tokens).toBeGreaterThan(0);
  });

  test("bad requests are refused with typed errors", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    const names = async (req: Parameters<typeof engine.run>[1]) => {
      try {
        await collect(engine.run(stories, req));
        return "no error";
      } catch (err) {
        return (err as Error).name;
      }
    };
    expect(await names({ kind: "generate", prompt: "   " })).toBe("InvalidInputError");
    expect(await names({ kind: "generate", prompt: "x", maxTokens: 0 })).toBe("InvalidInputError");
    expect(await names({ kind: "generate", prompt: "x", stop: [""] })).toBe("InvalidInputError");
    expect(await names({ kind: "generate", prompt: "once ".repeat(2000) })).toBe("InvalidInputError");
    expect(await names({ kind: "tensor", inputs: {} })).toBe("InvalidInputError");
    expect(await names({ kind: "generate", prompt: "x", resume: { tokens: [1, 99_999], text: "" } })).toBe(
      "InvalidInputError",
    );
    expect(await names({ kind: "generate", prompt: "x", resume: { tokens: [-1], text: "" } })).toBe(
      "InvalidInputError",
    );
  });

  test("a corrupted or truncated GGUF file is refused cleanly", async () => {
    using dir = tempDir();
    const truncated = join(dir.path, "truncated.gguf");
    writeFileSync(truncated, readFileSync(STORIES_GGUF).subarray(0, 400_000));
    const garbage = join(dir.path, "garbage.gguf");
    writeFileSync(garbage, Buffer.from("this is not a gguf file at all ".repeat(100)));
    await using engine = createLlamaEngine({ threads: 1 });
    for (const path of [truncated, garbage]) {
      const model: LocalModel = { name: "broken", runtime: "llama", path };
      let error: unknown;
      try {
        await collect(engine.run(model, { kind: "generate", prompt: "Once" }));
      } catch (err) {
        error = err;
      }
      expect((error as Error).name).toBe("IntegrityError");
    }
    // The engine still works after the failures.
    const ok = await collect(engine.run(stories, { kind: "generate", prompt: "Once upon a time", maxTokens: 4 }));
    expect(ok.tokens).toBeGreaterThan(0);
  });

  test("models stay loaded between requests and the least recently used is evicted over budget", async () => {
    using dir = tempDir();
    const paths = ["a.gguf", "b.gguf"].map((f) => join(dir.path, f));
    for (const p of paths) copyFileSync(STORIES_GGUF, p);
    const [a, b] = paths.map(
      (path, i) => ({ name: `m${i}`, runtime: "llama", path, sha256: STORIES_SHA256 }) as LocalModel,
    );
    const req = { kind: "generate", prompt: "Once upon a time", maxTokens: 4 } as const;

    await using roomy = createLlamaEngine({ threads: 1, maxLoadedBytes: 1 << 30 });
    await collect(roomy.run(a!, req));
    await collect(roomy.run(b!, req));
    expect(roomy.loadedModels()).toEqual(paths);

    await using tight = createLlamaEngine({ threads: 1, maxLoadedBytes: 1 });
    await collect(tight.run(a!, req));
    await collect(tight.run(b!, req));
    expect(tight.loadedModels()).toEqual([paths[1]!]);
    await collect(tight.run(a!, req));
    expect(tight.loadedModels()).toEqual([paths[0]!]);
  });

  test("thread count is calibrated once per model and machine, then remembered in SQLite", async () => {
    using dir = tempDir();
    using store = Store.openFile(join(dir.path, "t.db"));
    const real = sqliteCalibrationStore(store);
    const puts: CalibrationResult[] = [];
    const counting: CalibrationStore = {
      get: (k: CalibrationKey) => real.get(k),
      put: (k: CalibrationKey, r: CalibrationResult) => {
        puts.push(r);
        real.put(k, r);
      },
    };
    {
      await using engine = createLlamaEngine({ calibrations: counting, machine: "test-machine" });
      const threads = await engine.threadsFor(stories);
      expect(threads).toBeGreaterThanOrEqual(1);
      expect(puts).toHaveLength(1);
      expect(puts[0]!.results.length).toBeGreaterThanOrEqual(1);
      expect(puts[0]!.results.every((r) => r.tokensPerSecond > 0)).toBe(true);
    }
    {
      await using engine = createLlamaEngine({ calibrations: counting, machine: "test-machine" });
      expect(await engine.threadsFor(stories)).toBe(puts[0]!.threads);
      expect(puts).toHaveLength(1);
    }
  });
});
