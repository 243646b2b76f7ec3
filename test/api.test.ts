import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Ollama } from "ollama";
import OpenAI from "openai";
import { createLlamaEngine } from "../src/runtime/llama/engine.ts";
import { infernet, spawnInfernet } from "./helpers/cli.ts";
import { type NodeProcess, TestNetwork } from "./helpers/network.ts";
import { STORIES_GGUF, STORIES_SHA256 } from "./helpers/paths.ts";

/**
 * The OpenAI- and Ollama-compatible gateway (`infernet serve`) in front of a real network on 127.0.0.1: two
 * stories260k providers, the gateway as a node of its own, the official `openai` client. What comes
 * back is what `infernet run` gives for the same request through the same network.
 */
const MAX_TOKENS = 24;
const PROMPT = "Once upon a time";

let net: TestNetwork;
let providers: NodeProcess[];
let client: OpenAI;
let home: string;

beforeAll(async () => {
  net = new TestNetwork();
  // llama.cpp on 2 threads: ~30x slower per token here, so a long stream is still running when its
  // provider is killed (greedy text is the same on any thread count).
  const slow = { INFERNET_THREADS: "2" };
  const first = await net.start("p1", ["--provider", "--models", "stories260k"], slow);
  // p2 also serves the API itself (`infernet start --api`), running what it serves on its own engine.
  const second = await net.start(
    "p2",
    ["--provider", "--models", "stories260k", "--bootstrap", first.quic, "--api", "0", "--prefer", "local"],
    slow,
  );
  providers = [first, second];
  await net.discoverable(first.quic, "stories260k", providers);
  home = net.home("gateway");
  const served = await serveGateway(["--port", "0"], home);
  client = new OpenAI({ baseURL: served.url, apiKey: "unused-on-loopback", maxRetries: 0 });
}, 120_000);

const gateways: ReturnType<typeof spawnInfernet>[] = [];

afterAll(async () => {
  for (const g of gateways) g.kill();
  await Promise.all(gateways.map((g) => g.exited));
  await net?.[Symbol.asyncDispose]();
});

/** `infernet serve` on this network; its first stdout line says where it listens (a 127.0.0.1 URL). */
async function serveGateway(
  args: string[],
  at: string,
): Promise<{ proc: ReturnType<typeof spawnInfernet>; url: string }> {
  // A provider that is still running (one is killed by the failover test).
  const bootstrap = ["--bootstrap", providers.find((p) => p.proc.exitCode === null && !p.proc.killed)!.quic];
  const proc = spawnInfernet(["serve", ...args, ...bootstrap, "--no-mdns"], { home: at });
  gateways.push(proc);
  // Drained as it comes (a full pipe would stall the gateway); shown if it fails to start.
  let stderr = "";
  void (async () => {
    for await (const chunk of proc.stderr) stderr += new TextDecoder().decode(chunk);
  })();
  const { url } = JSON.parse(await firstLine(proc, () => stderr)) as { url: string };
  return { proc, url: url.replace("//0.0.0.0:", "//127.0.0.1:") };
}

/** The first line a process prints (`infernet serve` says where it listens). */
async function firstLine(proc: ReturnType<typeof spawnInfernet>, stderr = () => ""): Promise<string> {
  const reader = proc.stdout.getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      await proc.exited;
      throw new Error(`infernet serve exited: ${stderr()}`);
    }
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return out.slice(0, out.indexOf("\n"));
}

/** Whether `p` rejects with an API error; the error. */
async function fail(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (err) {
    return err as InstanceType<typeof OpenAI.APIError>;
  }
  throw new Error("the request succeeded");
}

/** Requests the provider is computing now (its `infernet status`). */
async function activeOn(p: NodeProcess): Promise<number> {
  const r = await infernet(["status", "--json"], { home: p.home });
  return (JSON.parse(r.stdout) as { load: { active: number } }).load.active;
}

/** `infernet run` on the same network, its --json result. */
async function run(args: string[]): Promise<{ text: string; usage: { inputTokens: number; outputTokens: number } }> {
  const r = await infernet(
    ["run", "stories260k", PROMPT, "--max-tokens", String(MAX_TOKENS), "--remote", "--json", ...args].concat([
      "--bootstrap",
      providers[0]!.quic,
      "--no-mdns",
    ]),
    { home: net.home("runner") },
  );
  expect(r.stderr).not.toContain("infernet:");
  return JSON.parse(r.stdout);
}

describe("OpenAI and Ollama APIs over the network", () => {
  test("models.list() shows the network's text models with their providers", async () => {
    const page = await client.models.list();
    const stories = page.data.find((m) => m.id === "stories260k") as unknown as { providers: number } | undefined;
    expect(stories?.providers).toBe(2);
    expect((await client.models.retrieve("stories260k")).id).toBe("stories260k");
  });

  test("completions, plain and streamed: the text and token counts of `infernet run --raw`", async () => {
    const expected = await run(["--raw"]);
    const plain = await client.completions.create({ model: "stories260k", prompt: PROMPT, max_tokens: MAX_TOKENS });
    expect(plain.choices[0]?.text).toBe(expected.text);
    expect(plain.choices[0]?.finish_reason).toBe("length");
    expect(plain.usage).toEqual({
      prompt_tokens: expected.usage.inputTokens,
      completion_tokens: MAX_TOKENS,
      total_tokens: expected.usage.inputTokens + MAX_TOKENS,
    });
    const stream = await client.completions.create({
      model: "stories260k",
      prompt: PROMPT,
      max_tokens: MAX_TOKENS,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(expected.text);
    expect(usage?.completion_tokens).toBe(MAX_TOKENS);
  });

  test("chat, plain and streamed: the text of `infernet run --chat --system`", async () => {
    const expected = await run(["--chat", "--system", "You tell short stories."]);
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: "system", content: "You tell short stories." },
      { role: "user", content: PROMPT },
    ];
    const { data: plain, response } = await client.chat.completions
      .create({ model: "stories260k", messages, max_tokens: MAX_TOKENS })
      .withResponse();
    expect(plain.choices[0]?.message.content).toBe(expected.text);
    expect(plain.usage?.completion_tokens).toBe(expected.usage.outputTokens);
    expect(providers.map((p) => p.status.peerId)).toContain(response.headers.get("x-infernet-provider") ?? "none");
    const stream = await client.chat.completions.create({
      model: "stories260k",
      messages,
      max_tokens: MAX_TOKENS,
      stream: true,
    });
    let text = "";
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(expected.text);
    expect(finish).toBe("length");
  });

  test("bad requests get OpenAI's error shape and status; the gateway stays up", async () => {
    const unknown = await fail(client.completions.create({ model: "no-such-model", prompt: "x" }));
    expect(unknown.status).toBe(404);
    expect(unknown.code).toBe("model_not_found");
    const huge = await fail(client.completions.create({ model: "stories260k", prompt: "x", max_tokens: 10_000_000 }));
    expect(huge.status).toBe(400);
    expect(huge.param).toBe("max_tokens");
    const negative = await fail(client.completions.create({ model: "stories260k", prompt: "x", max_tokens: -1 }));
    expect(negative.status).toBe(400);
    const lastIsAssistant = await fail(
      client.chat.completions.create({
        model: "stories260k",
        messages: [
          { role: "user", content: "a" },
          { role: "assistant", content: "b" },
        ],
      }),
    );
    expect(lastIsAssistant.status).toBe(400);
    expect((await fail(client.completions.create({ model: "stories260k", prompt: "x", n: 99 }))).param).toBe("n");
    const base = client.baseURL;
    const malformed = await fetch(`${base}/chat/completions`, { method: "POST", body: "{not json" });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
    const wrongType = await fetch(`${base}/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "stories260k", prompt: 42 }),
    });
    expect(wrongType.status).toBe(400);
    const oversized = await fetch(`${base}/completions`, { method: "POST", body: "x".repeat(2_000_000) });
    expect(oversized.status).toBe(413);
    // Still serving.
    const ok = await client.completions.create({ model: "stories260k", prompt: PROMPT, max_tokens: 4 });
    expect(ok.choices[0]?.text.length).toBeGreaterThan(0);
  });

  test("Ollama's routes on the same port: /api/generate and /api/chat stream NDJSON with infernet run's text", async () => {
    const base = client.baseURL.replace(/\/v1$/, "");
    const post = (path: string, body: unknown) =>
      fetch(`${base}${path}`, { method: "POST", body: JSON.stringify(body) });
    /** The NDJSON lines of a streamed answer. */
    const lines = async (r: Response) =>
      (await r.text())
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const raw = await run(["--raw"]);
    const options = { num_predict: MAX_TOKENS };
    const streamed = await post("/api/generate", { model: "stories260k", prompt: PROMPT, raw: true, options });
    expect(streamed.headers.get("content-type")).toBe("application/x-ndjson");
    const frames = await lines(streamed);
    expect(frames.length).toBeGreaterThan(2);
    expect(frames.map((f) => f.response).join("")).toBe(raw.text);
    expect(frames.at(-1)).toMatchObject({ done: true, done_reason: "length", eval_count: MAX_TOKENS });
    expect(frames.slice(0, -1).every((f) => f.done === false)).toBe(true);
    const whole = (await (
      await post("/api/generate", { model: "stories260k", prompt: PROMPT, raw: true, stream: false, options })
    ).json()) as { response: string; done: boolean };
    expect(whole).toMatchObject({ response: raw.text, done: true });

    const chat = await run(["--chat"]);
    const chatFrames = await lines(
      await post("/api/chat", { model: "stories260k", messages: [{ role: "user", content: PROMPT }], options }),
    );
    expect(chatFrames.map((f) => (f.message as { content: string }).content).join("")).toBe(chat.text);

    const tags = (await (await fetch(`${base}/api/tags`)).json()) as { models: { name: string; digest: string }[] };
    expect(tags.models.map((m) => m.name)).toContain("stories260k");
    expect((await (await fetch(`${base}/api/version`)).json()) as object).toHaveProperty("version");
    expect((await post("/api/show", { model: "stories260k" })).status).toBe(200);
    const missing = await post("/api/generate", { model: "nope", prompt: "x" });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: string }).error).toContain("not found");
    const bad = await post("/api/chat", { model: "stories260k", messages: "hello" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toContain("messages");
  });

  test("the official ollama client: chat streamed, generate, embed and list, with infernet run's text", async () => {
    const ollama = new Ollama({ host: client.baseURL.replace(/\/v1$/, "") });
    const expected = await run(["--chat"]);
    const parts = await ollama.chat({
      model: "stories260k",
      messages: [{ role: "user", content: PROMPT }],
      stream: true,
      options: { num_predict: MAX_TOKENS },
    });
    let text = "";
    let last: { done: boolean; eval_count: number } | undefined;
    for await (const part of parts) {
      text += part.message.content;
      last = part;
    }
    expect(text).toBe(expected.text);
    expect(last).toMatchObject({ done: true, eval_count: MAX_TOKENS });
    const raw = await run(["--raw"]);
    const generated = await ollama.generate({
      model: "stories260k",
      prompt: PROMPT,
      raw: true,
      options: { num_predict: MAX_TOKENS },
    });
    expect(generated.response).toBe(raw.text);
    const embedded = await ollama.embed({ model: "stories260k", input: ["Once upon a time"] });
    expect(embedded.embeddings[0]).toHaveLength(64);
    expect((await ollama.list()).models.map((m) => m.name)).toContain("stories260k");
  });

  test("infernet start --api --prefer local: the API on a running node, its own models on its own engine", async () => {
    const url = (providers[1]!.status as unknown as { api?: string }).api;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    const onNode = new OpenAI({ baseURL: url, apiKey: "unused-on-loopback", maxRetries: 0 });
    const expected = await run(["--raw"]);
    const { data: r, response } = await onNode.completions
      .create({ model: "stories260k", prompt: PROMPT, max_tokens: MAX_TOKENS })
      .withResponse();
    expect(r.choices[0]?.text).toBe(expected.text);
    expect(response.headers.get("x-infernet-provider")).toBe(providers[1]!.status.peerId);
  });

  test("infernet serve --prefer local with no network: the models downloaded here, run here", async () => {
    const at = net.home("offline");
    expect((await infernet(["pull", "stories260k"], { home: at })).code).toBe(0);
    const proc = spawnInfernet(["serve", "--port", "0", "--prefer", "local"], { home: at });
    gateways.push(proc);
    const line = await firstLine(proc);
    const { url, via } = JSON.parse(line) as { url: string; via: string };
    expect(via).toBe("none");
    const offline = new OpenAI({ baseURL: url, apiKey: "unused-on-loopback", maxRetries: 0 });
    const listed = (await offline.models.list()).data as unknown as {
      id: string;
      local?: boolean;
      providers: number;
    }[];
    expect(listed).toEqual([expect.objectContaining({ id: "stories260k", local: true, providers: 0 })]);
    const expected = await run(["--raw"]);
    const { data: r, response } = await offline.completions
      .create({ model: "stories260k", prompt: PROMPT, max_tokens: MAX_TOKENS })
      .withResponse();
    expect(r.choices[0]?.text).toBe(expected.text);
    expect(response.headers.get("x-infernet-provider")).toBe("local");
    const elsewhere = await fail(offline.completions.create({ model: "tinyllama", prompt: PROMPT }));
    expect(elsewhere.status).toBe(503);
  });

  test("a non-loopback --host is refused with a clear message", async () => {
    const r = await infernet(["serve", "--host", "0.0.0.0", "--port", "0"], { home: net.home("exposed") });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("needs an API key");
  });

  test("a conversation (earlier turns) is answered as the engine answers it; n choices come back as n generations", async () => {
    const history = [
      { role: "user" as const, content: PROMPT },
      { role: "assistant" as const, content: "there was a little girl named Lily." },
    ];
    await using engine = createLlamaEngine({ threads: 1 });
    let want = "";
    for await (const e of engine.run(
      { name: "stories260k", runtime: "llama", path: STORIES_GGUF, sha256: STORIES_SHA256 },
      { kind: "generate", prompt: "What did she do?", chat: true, history, maxTokens: MAX_TOKENS },
    )) {
      if (e.type === "token") want += e.text;
    }
    const r = await client.chat.completions.create({
      model: "stories260k",
      messages: [...history, { role: "user", content: "What did she do?" }],
      max_tokens: MAX_TOKENS,
      n: 2,
    });
    // Greedy: both choices are the same text.
    expect(r.choices.map((c) => [c.index, c.message.content])).toEqual([
      [0, want],
      [1, want],
    ]);
    expect(r.usage?.completion_tokens).toBe(2 * MAX_TOKENS);
    const expected = await run(["--raw"]);
    const stream = await client.completions.create({
      model: "stories260k",
      prompt: PROMPT,
      max_tokens: MAX_TOKENS,
      n: 3,
      stream: true,
    });
    const texts = ["", "", ""];
    for await (const chunk of stream) for (const c of chunk.choices) texts[c.index] += c.text;
    expect(texts).toEqual([expected.text, expected.text, expected.text]);
  });

  test("embeddings: the provider's vectors, exactly the engine's, through OpenAI's client and Ollama's route", async () => {
    const texts = ["Once upon a time", "The cat sat on the mat"];
    await using engine = createLlamaEngine({ threads: 1 });
    let want: number[][] = [];
    for await (const e of engine.run(
      { name: "stories260k", runtime: "llama", path: STORIES_GGUF, sha256: STORIES_SHA256 },
      { kind: "embed", inputs: texts },
    )) {
      if (e.type === "tensors") {
        const t = e.outputs.embeddings!;
        const width = t.dims[1]!;
        want = texts.map((_, i) => Array.from((t.data as Float32Array).subarray(i * width, (i + 1) * width)));
      }
    }
    expect(want[0]?.length).toBe(64);
    // The client asks for base64 by default and decodes it.
    const { data: r, response } = await client.embeddings.create({ model: "stories260k", input: texts }).withResponse();
    expect(r.data.map((d) => d.embedding)).toEqual(want);
    expect(r.usage.prompt_tokens).toBeGreaterThan(texts.length);
    expect(providers.map((p) => p.status.peerId)).toContain(response.headers.get("x-infernet-provider") ?? "none");
    const floats = await client.embeddings.create({ model: "stories260k", input: texts[0]!, encoding_format: "float" });
    expect(floats.data[0]?.embedding).toEqual(want[0]!);
    const wrongWidth = await fail(client.embeddings.create({ model: "stories260k", input: "x", dimensions: 8 }));
    expect([wrongWidth.status, wrongWidth.param]).toEqual([400, "dimensions"]);
    const base = client.baseURL.replace(/\/v1$/, "");
    const ollama = (await (
      await fetch(`${base}/api/embed`, { method: "POST", body: JSON.stringify({ model: "stories260k", input: texts }) })
    ).json()) as { embeddings: number[][] };
    expect(ollama.embeddings).toEqual(want);
  });

  test("logprobs: each generated token's, from the provider, as the local engine reads them; streamed too", async () => {
    await using engine = createLlamaEngine({ threads: 1 });
    const local: { text: string; logprob: number }[] = [];
    for await (const e of engine.run(
      { name: "stories260k", runtime: "llama", path: STORIES_GGUF, sha256: STORIES_SHA256 },
      { kind: "generate", prompt: PROMPT, chat: true, maxTokens: MAX_TOKENS, logprobs: 2 },
    )) {
      if (e.type === "logprobs") local.push(...e.tokens);
    }
    const r = await client.chat.completions.create({
      model: "stories260k",
      messages: [{ role: "user", content: PROMPT }],
      max_tokens: MAX_TOKENS,
      logprobs: true,
      top_logprobs: 2,
    });
    const content = r.choices[0]?.logprobs?.content ?? [];
    expect(content).toHaveLength(MAX_TOKENS);
    expect(content.map((c) => c.token).join("")).toBe(r.choices[0]?.message.content ?? "none");
    expect(content.map((c) => c.token)).toEqual(local.map((t) => t.text));
    for (const [i, c] of content.entries()) {
      expect(c.logprob).toBeCloseTo(local[i]!.logprob, 4);
      expect(c.top_logprobs).toHaveLength(2);
      // Greedy: the token is the likeliest.
      expect(c.top_logprobs[0]?.logprob).toBe(c.logprob);
      expect(Buffer.from(c.bytes ?? []).toString()).toBe(c.token);
    }
    const stream = await client.completions.create({
      model: "stories260k",
      prompt: PROMPT,
      max_tokens: MAX_TOKENS,
      logprobs: 1,
      stream: true,
    });
    let text = "";
    const tokens: string[] = [];
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      tokens.push(...(chunk.choices[0]?.logprobs?.tokens ?? []));
    }
    expect(tokens.join("")).toBe(text);
    expect(tokens).toHaveLength(MAX_TOKENS);
  });

  test("structured output and forced tool calls: the provider generates under the JSON schema's grammar", async () => {
    const schema = {
      type: "object",
      properties: { mood: { enum: ["happy", "sad"] }, hungry: { type: "boolean" } },
      required: ["mood", "hungry"],
    };
    const valid = (text: string | null | undefined) => {
      const v = JSON.parse(text ?? "null") as { mood: string; hungry: boolean };
      expect(["happy", "sad"]).toContain(v.mood);
      expect(typeof v.hungry).toBe("boolean");
    };
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "How is Lily today?" }];
    const structured = await client.chat.completions.create({
      model: "stories260k",
      messages,
      max_tokens: 64,
      response_format: { type: "json_schema", json_schema: { name: "mood", schema } },
    });
    valid(structured.choices[0]?.message.content);
    expect(structured.choices[0]?.finish_reason).toBe("stop");

    const tools: OpenAI.ChatCompletionTool[] = [
      { type: "function", function: { name: "set_mood", description: "Record Lily's mood", parameters: schema } },
    ];
    const called = await client.chat.completions.create({
      model: "stories260k",
      messages,
      max_tokens: 64,
      tools,
      tool_choice: { type: "function", function: { name: "set_mood" } },
    });
    const choice = called.choices[0]!;
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBeNull();
    const call = choice.message.tool_calls?.[0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe("set_mood");
    expect(call.id).toMatch(/^call_/);
    valid(call.function.arguments);

    // Streamed: the call's id and name first, then its arguments in pieces.
    const stream = await client.chat.completions.create({
      model: "stories260k",
      messages,
      max_tokens: 64,
      tools,
      tool_choice: "required",
      stream: true,
    });
    let args = "";
    let name: string | undefined;
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta;
      name ??= delta?.tool_calls?.[0]?.function?.name;
      args += delta?.tool_calls?.[0]?.function?.arguments ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect([name, finish]).toEqual(["set_mood", "tool_calls"]);
    expect(args).toBe(call.function.arguments);
    const auto = await fail(client.chat.completions.create({ model: "stories260k", messages, tools }));
    expect([auto.status, auto.param]).toEqual([400, "tool_choice"]);

    const base = client.baseURL.replace(/\/v1$/, "");
    const ollama = (await (
      await fetch(`${base}/api/chat`, {
        method: "POST",
        body: JSON.stringify({
          model: "stories260k",
          messages,
          format: schema,
          stream: false,
          options: { num_predict: 64 },
        }),
      })
    ).json()) as { message: { content: string } };
    valid(ollama.message.content);
  });

  test("a client that goes away mid-stream cancels the generation on the provider", async () => {
    const controller = new AbortController();
    const { data: stream, response } = await client.completions
      .create({ model: "stories260k", prompt: PROMPT, max_tokens: 300, stream: true }, { signal: controller.signal })
      .withResponse();
    const serving = providers.find((p) => p.status.peerId === response.headers.get("x-infernet-provider"))!;
    expect(await activeOn(serving)).toBe(1);
    try {
      for await (const _chunk of stream) controller.abort();
    } catch {
      // The client's own abort, however it surfaces.
    }
    expect(controller.signal.aborted).toBe(true);
    // 300 tokens take ~15 s on this provider; it is idle again long before that.
    const deadline = Date.now() + 5_000;
    while ((await activeOn(serving)) > 0 && Date.now() < deadline) await Bun.sleep(100);
    expect(await activeOn(serving)).toBe(0);
  }, 30_000);

  // Last: it leaves one provider.
  test("the provider SIGKILLed mid-stream: the stream goes on on the other one, the text unchanged", async () => {
    const long = 300;
    const expected = await infernet(
      ["run", "stories260k", PROMPT, "--max-tokens", String(long), "--remote", "--raw", "--json"].concat([
        "--bootstrap",
        providers[0]!.quic,
        "--no-mdns",
      ]),
      { home: net.home("runner-long") },
    );
    const want = JSON.parse(expected.stdout).text as string;
    const { data: stream, response } = await client.completions
      .create({ model: "stories260k", prompt: PROMPT, max_tokens: long, stream: true })
      .withResponse();
    const serving = providers.find((p) => p.status.peerId === response.headers.get("x-infernet-provider"));
    expect(serving).toBeDefined();
    let text = "";
    let killed = false;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      if (!killed && text.length > 0) {
        killed = true;
        await net.kill(serving!);
      }
    }
    expect(killed).toBe(true);
    expect(text).toBe(want);
  }, 60_000);
});

describe("API keys: a listener off loopback, rates, concurrency, budgets", () => {
  /** `infernet api-key create` in `at`; the new key's JSON (secret included). */
  async function createKey(at: string, args: string[]): Promise<{ id: string; secret: string }> {
    const r = await infernet(["api-key", "create", "--json", ...args], { home: at });
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout);
  }

  test("every request needs a valid key; a key's rate, concurrency and budget are enforced; revoked is refused", async () => {
    const at = net.home("keyed");
    const open = await createKey(at, ["--name", "open"]);
    const slow = await createKey(at, ["--rpm", "2"]);
    const single = await createKey(at, ["--concurrency", "1"]);
    // 10 sats per 1,000 tokens (the providers' price) is 10 msat a token: 24 tokens cost 240 msat.
    const budget = await createKey(at, ["--budget", "1"]);
    const { url } = await serveGateway(["--host", "0.0.0.0", "--port", "0"], at);
    const as = (key: string) => new OpenAI({ baseURL: url, apiKey: key, maxRetries: 0 });
    const complete = (key: string) =>
      as(key).completions.create({ model: "stories260k", prompt: PROMPT, max_tokens: MAX_TOKENS });

    const missing = await fail(as("unused-on-loopback").models.list());
    expect(missing.status).toBe(401);
    expect(missing.code).toBe("invalid_api_key");
    expect((await fetch(`${url}/models`)).status).toBe(401);
    expect((await as(open.secret).models.list()).data.map((m) => m.id)).toContain("stories260k");

    await complete(slow.secret);
    await complete(slow.secret);
    const limited = await fail(complete(slow.secret));
    expect([limited.status, limited.code]).toEqual([429, "rate_limit_exceeded"]);

    const held = await as(single.secret).completions.create({
      model: "stories260k",
      prompt: PROMPT,
      max_tokens: MAX_TOKENS,
      stream: true,
    });
    const busy = await fail(complete(single.secret));
    expect([busy.status, busy.code]).toEqual([429, "concurrency_limit_exceeded"]);
    for await (const _chunk of held) {
      // Read to the end: the slot is free again.
    }
    await complete(single.secret);

    // 1 sat = 1,000 msat: four requests reserve and spend 240 msat each, the fifth does not fit.
    for (let i = 0; i < 4; i++) await complete(budget.secret);
    const broke = await fail(complete(budget.secret));
    expect([broke.status, broke.code]).toEqual([402, "insufficient_quota"]);
    const list = await infernet(["api-key", "list", "--json"], { home: at });
    const row = (JSON.parse(list.stdout) as { keys: { id: string; spentSats: number; requests: number }[] }).keys.find(
      (k) => k.id === budget.id,
    );
    expect(row).toMatchObject({ spentSats: 0.96, requests: 4 });
    expect(list.stdout).not.toContain(budget.secret);

    const revoked = await infernet(["api-key", "revoke", open.id], { home: at });
    expect(revoked.code).toBe(0);
    await Bun.sleep(1_100);
    expect((await fail(as(open.secret).models.list())).status).toBe(401);
  }, 60_000);
});
