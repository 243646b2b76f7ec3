import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Stream } from "@libp2p/interface";
import { STORIES_GGUF, STORIES_GREEDY_PREFIX, STORIES_SHA256 } from "../../../../test/helpers/paths.ts";
import type { GenerateRequest, InferenceEvent, LocalModel } from "../../../runtime/engine.ts";
import { createLlamaEngine, type LlamaEngine } from "../../../runtime/llama/engine.ts";
import { errorFrame, readMessage, wireStream, writeMessage } from "../../wire.ts";
import { INFER_PROTOCOL, type InferService, inferProtocol, type RemoteInferenceError } from "./index.ts";
import { RequestMessageSchema } from "./messages.ts";
import { eventually, type ObservedEngine, observed } from "./test-engines.ts";
import { connect, type TestHost, testHost } from "./test-hosts.ts";

// Real llama.cpp on stories260k behind real libp2p hosts over QUIC on 127.0.0.1.
const STORIES: LocalModel = { name: "stories260k", runtime: "llama", path: STORIES_GGUF, sha256: STORIES_SHA256 };
const REF = { name: "stories260k", sha256: STORIES_SHA256 };
const PROMPT = "Once upon a time";

let local: LlamaEngine;
let served: LlamaEngine;
let engine: ObservedEngine;
let provider: TestHost;
let capped: TestHost;
let client: TestHost;
let rogue: TestHost;
let infer: InferService;
let providerService: InferService;

beforeAll(async () => {
  local = createLlamaEngine({ threads: 1 });
  served = createLlamaEngine({ threads: 1 });
  engine = observed(served);
  const serves = () => new Map([[STORIES_SHA256, STORIES]]);
  provider = await testHost({
    infer: inferProtocol({ served: serves, engines: { llama: engine }, maxConcurrent: 1, maxQueued: 1 }),
  });
  capped = await testHost({
    infer: inferProtocol({ served: serves, engines: { llama: served }, requestTimeoutMs: 40 }),
  });
  client = await testHost({ infer: inferProtocol() });
  rogue = await testHost();
  await rogue.handle(INFER_PROTOCOL, misbehave);
  for (const peer of [provider, capped, rogue]) await connect(client, peer);
  infer = client.services.infer as InferService;
  providerService = provider.services.infer as InferService;
  await Promise.all([local.preload(STORIES), served.preload(STORIES)]);
});

afterAll(async () => {
  await Promise.all([client, provider, capped, rogue].map((h) => h?.stop()));
  await Promise.all([local?.dispose(), served?.dispose()]);
});

interface Collected {
  chunks: { text: string; tokens: number[] }[];
  text: string;
  tokens: number[];
  done: Extract<InferenceEvent, { type: "done" }> | undefined;
}

async function collect(events: AsyncIterable<InferenceEvent>): Promise<Collected> {
  const out: Collected = { chunks: [], text: "", tokens: [], done: undefined };
  for await (const e of events) {
    if (e.type === "token") {
      out.chunks.push({ text: e.text, tokens: e.tokens });
      out.text += e.text;
      out.tokens.push(...e.tokens);
    } else if (e.type === "done") out.done = e;
  }
  return out;
}

const generate = (extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  kind: "generate",
  prompt: PROMPT,
  ...extra,
});

async function failure(events: AsyncIterable<InferenceEvent>): Promise<RemoteInferenceError> {
  try {
    await collect(events);
  } catch (err) {
    return err as RemoteInferenceError;
  }
  throw new Error("the call succeeded");
}

/** A peer that speaks the real wire format wrongly, chosen by the prompt, to test the client. */
async function misbehave(stream: Stream): Promise<void> {
  const lp = wireStream(stream, 1 << 20);
  const req = await readMessage(lp, RequestMessageSchema);
  const prompt = req.request.kind === "generate" ? req.request.prompt : "";
  const token = { v: 1, type: "token", text: "x", tokens: [1] };
  if (prompt === "end early") await writeMessage(lp, token);
  if (prompt === "garbage") await lp.write(new Uint8Array([0xff, 0x00, 0x13]));
  if (prompt === "tensors") await writeMessage(lp, { v: 1, type: "tensors", outputs: {} });
  if (prompt === "new code") await writeMessage(lp, errorFrame("quota-exceeded", "a code from the future"));
  if (prompt === "v2") await writeMessage(lp, { v: 2, type: "token" });
  if (prompt === "reset") {
    await writeMessage(lp, token);
    stream.abort(new Error("provider crashed"));
    return;
  }
  await stream.close();
}

describe("remote generation over QUIC", () => {
  test("greedy text and token ids equal the local run exactly", async () => {
    const want = await collect(local.run(STORIES, generate({ maxTokens: 200 })));
    const got = await collect(infer.infer(provider.peerId, REF, generate({ maxTokens: 200 })));
    expect(want.text.startsWith(STORIES_GREEDY_PREFIX)).toBe(true);
    expect(got.text).toBe(want.text);
    expect(got.tokens).toEqual(want.tokens);
    expect(got.done?.finishReason).toBe("length");
    expect(got.done?.usage.outputTokens).toBe(200);
    expect(got.done?.usage.inputTokens).toBe(want.done?.usage.inputTokens as number);
    expect(providerService.load()).toMatchObject({ active: 0, queued: 0, maxConcurrent: 1 });
  });

  test("a resumed generation equals the local resumed run and the rest of the uninterrupted one", async () => {
    const full = await collect(local.run(STORIES, generate({ maxTokens: 100 })));
    for (const cut of [1, 37]) {
      const head = full.chunks.slice(0, cut);
      const resume = { tokens: head.flatMap((c) => c.tokens), text: head.map((c) => c.text).join("") };
      const request = generate({ maxTokens: 100 - resume.tokens.length, resume });
      const want = await collect(local.run(STORIES, request));
      const got = await collect(infer.infer(provider.peerId, REF, request));
      expect(got.text).toBe(want.text);
      expect(got.tokens).toEqual(want.tokens);
      expect(resume.text + got.text).toBe(full.text);
      expect([...resume.tokens, ...got.tokens]).toEqual(full.tokens);
    }
  });

  test("sampling settings, seed and stop strings travel intact", async () => {
    const sampled = generate({ maxTokens: 120, temperature: 0.8, topK: 40, topP: 0.9, seed: 42 });
    const want = await collect(local.run(STORIES, sampled));
    const got = await collect(infer.infer(provider.peerId, REF, sampled));
    expect(got.text).toBe(want.text);
    expect(got.text).not.toBe((await collect(local.run(STORIES, generate({ maxTokens: 120 })))).text);
    const stop = generate({ maxTokens: 120, stop: ["park"] });
    const stopped = await collect(infer.infer(provider.peerId, REF, stop));
    expect(stopped.done?.finishReason).toBe("stop");
    expect(stopped.text).toBe((await collect(local.run(STORIES, stop))).text);
    expect(STORIES_GREEDY_PREFIX.startsWith(`${stopped.text.trimEnd()} park`)).toBe(true);
  });
});

describe("refusals", () => {
  test("a model the provider does not serve", async () => {
    const err = await failure(infer.infer(provider.peerId, { name: "other", sha256: "ab".repeat(32) }, generate()));
    expect(err.name).toBe("RemoteInferenceError");
    expect(err.code).toBe("model-not-served");
    expect(err.peer).toBe(provider.peerId.toString());
  });

  test("input the engine refuses is invalid-input", async () => {
    expect((await failure(infer.infer(provider.peerId, REF, generate({ prompt: "  " })))).code).toBe("invalid-input");
    const tensor = {
      kind: "tensor" as const,
      inputs: { x: { type: "float32" as const, dims: [1], data: new Float32Array(1) } },
    };
    expect((await failure(infer.infer(provider.peerId, REF, tensor))).code).toBe("invalid-input");
  });

  test("beyond its slots and queue the provider answers busy; the others complete exactly", async () => {
    const want = await collect(local.run(STORIES, generate({ maxTokens: 100 })));
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        collect(infer.infer(provider.peerId, REF, generate({ maxTokens: 100 }))).catch((e: RemoteInferenceError) => e),
      ),
    );
    const busy = results.filter((r) => r instanceof Error);
    expect(busy.length).toBeGreaterThanOrEqual(1);
    for (const e of busy) expect((e as RemoteInferenceError).code).toBe("busy");
    for (const r of results) if (!(r instanceof Error)) expect(r.text).toBe(want.text);
    expect(providerService.load()).toMatchObject({ active: 0, queued: 0 });
  });

  test("a node that serves nothing does not speak the protocol", async () => {
    await using other = await testHost({ infer: inferProtocol() });
    const err = await failure(infer.infer(other.peerId, REF, generate()));
    expect(err.code).toBe("protocol");
  });
});

describe("cancel and deadlines", () => {
  test("aborting the client's signal stops generation on the provider", async () => {
    const controller = new AbortController();
    let received = 0;
    let error: unknown;
    try {
      for await (const e of infer.infer(provider.peerId, REF, generate({ maxTokens: 400 }), {
        signal: controller.signal,
      })) {
        if (e.type === "token" && ++received === 1) controller.abort();
      }
    } catch (err) {
      error = err;
    }
    expect((error as Error).name).toBe("AbortedError");
    expect(await eventually(() => providerService.load().active === 0, 1_000)).toBe(true);
    const run = engine.runs.at(-1);
    expect(await eventually(() => run?.ended !== "running", 1_000)).toBe(true);
    expect(run?.aborted).toBe(true);
    expect(run?.tokens).toBeLessThan(200);
  });

  test("leaving the loop early cancels the request too", async () => {
    for await (const e of infer.infer(provider.peerId, REF, generate({ maxTokens: 400 })))
      if (e.type === "token") break;
    expect(await eventually(() => engine.runs.at(-1)?.ended !== "running", 1_000)).toBe(true);
    expect(engine.runs.at(-1)?.tokens).toBeLessThan(200);
    expect(providerService.load().active).toBe(0);
  });

  test("the client's deadline gives TimeoutError and stops the provider", async () => {
    const started = performance.now();
    let error: unknown;
    try {
      await collect(infer.infer(provider.peerId, REF, generate({ maxTokens: 400 }), { deadlineMs: 40 }));
    } catch (err) {
      error = err;
    }
    expect((error as Error).name).toBe("TimeoutError");
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(await eventually(() => engine.runs.at(-1)?.aborted === true, 1_000)).toBe(true);
    expect(await eventually(() => providerService.load().active === 0, 1_000)).toBe(true);
  });

  test("the provider's own cap ends a long request with a timeout error frame", async () => {
    const err = await failure(infer.infer(capped.peerId, REF, generate({ maxTokens: 400 })));
    expect(err.code).toBe("timeout");
    expect((capped.services.infer as InferService).load().active).toBe(0);
  });

  test("a stopped service refuses new calls with AbortedError", async () => {
    await using other = await testHost({ infer: inferProtocol() });
    await other.stop();
    const err = await failure((other.services.infer as InferService).infer(provider.peerId, REF, generate()));
    expect(err.name).toBe("AbortedError");
  });
});

describe("a peer that breaks the protocol", () => {
  test.each([
    ["end early", "protocol"],
    ["reset", "protocol"],
    ["garbage", "protocol"],
    ["tensors", "protocol"],
    ["v2", "unsupported-version"],
    ["new code", "internal"],
  ])("%s -> %s", async (prompt, code) => {
    const err = await failure(infer.infer(rogue.peerId, REF, generate({ prompt })));
    expect(err.name).toBe("RemoteInferenceError");
    expect(err.code).toBe(code as RemoteInferenceError["code"]);
  });
});
