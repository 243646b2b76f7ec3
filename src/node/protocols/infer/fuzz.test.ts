import { heapStats } from "bun:jsc";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { STORIES_GGUF, STORIES_SHA256 } from "../../../../test/helpers/paths.ts";
import type { InferenceEvent, LocalModel } from "../../../runtime/engine.ts";
import { createLlamaEngine, type LlamaEngine } from "../../../runtime/llama/engine.ts";
import { decode, encode, WIRE_VERSION, wireStream } from "../../wire.ts";
import { fuzzRandom } from "../fuzz-random.ts";
import { INFER_PROTOCOL, type InferService, inferProtocol } from "./index.ts";
import { MAX_REQUEST_FRAME_BYTES, MAX_RESPONSE_FRAME_BYTES, ResponseMessageSchema } from "./messages.ts";
import { eventually } from "./test-engines.ts";
import { connect, framed, type TestHost, testHost, varint } from "./test-hosts.ts";

/**
 * Fuzz loop: 1,200 hostile inputs sent raw to a real provider's /infernet/infer/1.0.0 handler over QUIC
 * (garbage, truncated, oversized, wrong-version, wrong-type, mutated and out-of-bounds frames). The
 * provider must answer each with an error frame or a closed stream, never crash or hang, keep
 * answering valid requests exactly, free every slot and stream, and not grow in memory.
 */
const CASES = 1_200;
/** Allowed growth of the process's RSS after GC, from before the loop to after it. */
const RSS_GROWTH_BOUND_BYTES = 64 * 1024 ** 2;
/** Allowed growth of live JS heap objects over the same span (about 8 per case). */
const OBJECT_GROWTH_BOUND = 10_000;
/**
 * libp2p keeps every inbound stream reachable for its protocol-negotiation timeout (an
 * `AbortSignal.timeout` of 10 s, `PROTOCOL_NEGOTIATION_TIMEOUT`) whatever the handler does; memory is
 * measured once those have fired.
 */
const LIBP2P_NEGOTIATION_HOLD_MS = 10_500;
/** Longest wait for the provider's answer to one case. */
const REPLY_TIMEOUT_MS = 3_000;

const STORIES: LocalModel = { name: "stories260k", runtime: "llama", path: STORIES_GGUF, sha256: STORIES_SHA256 };
const REF = { name: "stories260k", sha256: STORIES_SHA256 };
const VALID = {
  v: WIRE_VERSION,
  type: "request",
  model: REF,
  request: { kind: "generate", prompt: "Once upon a time", maxTokens: 2 },
  deadlineMs: 10_000,
};

let engine: LlamaEngine;
let provider: TestHost;
let client: TestHost;

beforeAll(async () => {
  engine = createLlamaEngine({ threads: 1 });
  provider = await testHost({
    infer: inferProtocol({ served: () => new Map([[STORIES_SHA256, STORIES]]), engines: { llama: engine } }),
  });
  client = await testHost({ infer: inferProtocol() });
  await connect(client, provider);
  await engine.preload(STORIES);
});

afterAll(async () => {
  await Promise.all([client?.stop(), provider?.stop()]);
  await engine?.dispose();
});

// Seeded, so a failing case can be replayed.
const { random, int, pick, bytes } = fuzzRandom(20261126);
const withRequest = (patch: Record<string, unknown>) => ({ ...VALID, request: { ...VALID.request, ...patch } });
const tensorRequest = (t: unknown) => ({ ...VALID, request: { kind: "tensor", inputs: { x: t } } });

/** Fields the schema must refuse, one at a time. */
const BAD_FIELDS: (() => unknown)[] = [
  () => withRequest({ prompt: 42 }),
  () => withRequest({ prompt: "x".repeat(1_000_001) }),
  () => withRequest({ maxTokens: -1 }),
  () => withRequest({ maxTokens: 1.5 }),
  () => withRequest({ temperature: 1e9 }),
  () => withRequest({ topP: 2 }),
  () => withRequest({ seed: -3 }),
  () => withRequest({ stop: Array(17).fill("s") }),
  () => withRequest({ stop: [""] }),
  () => withRequest({ resume: { tokens: [-1], text: "" } }),
  () => withRequest({ resume: { tokens: Array(131_073).fill(1), text: "" } }),
  () => withRequest({ kind: "train" }),
  () => ({ ...VALID, model: { name: "stories260k", sha256: "XYZ" } }),
  () => ({ ...VALID, model: { name: "", sha256: STORIES_SHA256 } }),
  () => ({ ...VALID, model: "stories260k" }),
  () => ({ ...VALID, deadlineMs: 0 }),
  () => ({ ...VALID, deadlineMs: 1e12 }),
  () => ({ ...VALID, request: null }),
  () => tensorRequest({ type: "float32", dims: [3], data: new Uint8Array(8) }),
  () => tensorRequest({ type: "float32", dims: [2 ** 31 - 1, 2 ** 31 - 1], data: new Uint8Array(4) }),
  () => tensorRequest({ type: "float32", dims: Array(9).fill(1), data: new Uint8Array(4) }),
  () => tensorRequest({ type: "complex128", dims: [1], data: new Uint8Array(16) }),
  () => tensorRequest({ type: "float32", dims: [1], data: [0, 0, 0, 0] }),
  () => ({
    ...VALID,
    request: {
      kind: "tensor",
      inputs: Object.fromEntries(
        Array.from({ length: 65 }, (_, i) => [`t${i}`, { type: "uint8", dims: [1], data: new Uint8Array(1) }]),
      ),
    },
  }),
  () => ({ ...VALID, type: pick(["token", "done", "error", "tensors", "", "REQUEST"]) }),
];

interface Case {
  kind: string;
  bytes: Uint8Array;
  /** Close our write side after sending (a peer that keeps it open is a case too). */
  end: boolean;
  /** Error codes that are a right answer; "none" = the stream may just end. */
  codes: string[];
}

function makeCase(): Case {
  const valid = encode(VALID);
  switch (int(10)) {
    case 0:
      return { kind: "raw garbage", bytes: bytes(int(600)), end: true, codes: ["bad-request", "none"] };
    case 1:
      return { kind: "framed garbage", bytes: framed(bytes(int(600))), end: true, codes: ["bad-request"] };
    case 2: {
      const value = pick<unknown>([42, "request", [1, 2, 3], true, null, new Uint8Array(5), -7.5, [VALID]]);
      return { kind: "not a map", bytes: framed(encode(value)), end: true, codes: ["bad-request"] };
    }
    case 3: {
      const v = pick<unknown>([0, 2, 3, 255, "1", -1, 1.5, null, undefined, [1]]);
      return {
        kind: "wrong version",
        bytes: framed(encode({ ...VALID, v })),
        end: true,
        codes: ["unsupported-version"],
      };
    }
    case 4:
      return { kind: "bad field", bytes: framed(encode(pick(BAD_FIELDS)())), end: true, codes: ["bad-request"] };
    case 5: {
      const mutated = valid.slice();
      for (let i = 0; i <= int(4); i++) mutated[int(mutated.length)] = int(256);
      // A mutation can leave a valid request (a different prompt): then it simply runs.
      return {
        kind: "mutated",
        bytes: framed(mutated),
        end: true,
        codes: ["bad-request", "unsupported-version", "model-not-served", "invalid-input", "ok"],
      };
    }
    case 6: {
      const whole = framed(valid);
      return {
        kind: "truncated",
        bytes: whole.subarray(0, 1 + int(whole.length - 1)),
        end: true,
        codes: ["bad-request"],
      };
    }
    case 7: {
      const length = MAX_REQUEST_FRAME_BYTES + 1 + int(2 ** 40);
      return {
        kind: "oversized",
        bytes: new Uint8Array([...varint(length), ...bytes(int(64))]),
        end: random() < 0.5,
        codes: ["bad-request"],
      };
    }
    case 8: {
      let nested: unknown = "deep";
      for (let i = 0; i < 2_000 + int(20_000); i++) nested = [nested];
      return {
        kind: "deeply nested",
        bytes: framed(encode(withRequest({ prompt: nested }))),
        end: true,
        codes: ["bad-request"],
      };
    }
    default: {
      const other = {
        ...VALID,
        model: { name: "other", sha256: bytes(32).reduce((s, b) => s + b.toString(16).padStart(2, "0"), "") },
      };
      return { kind: "not served", bytes: framed(encode(other)), end: true, codes: ["model-not-served"] };
    }
  }
}

/** Sends one case raw and returns what came back: an error code, "ok" (a done frame) or "none". */
async function send(c: Case): Promise<string> {
  // With no signal of ours, libp2p would hold the outbound stream for its own 10 s timeout too.
  const dial = new AbortController();
  const stream = await client.dialProtocol(provider.peerId, INFER_PROTOCOL, { signal: dial.signal });
  const lp = wireStream(stream, MAX_RESPONSE_FRAME_BYTES);
  try {
    stream.send(c.bytes);
    if (c.end) await stream.close();
    for (;;) {
      const reply = ResponseMessageSchema.parse(
        decode((await lp.read({ signal: AbortSignal.timeout(REPLY_TIMEOUT_MS) })).subarray()),
      );
      if (reply.type === "error") return reply.code;
      if (reply.type === "done") return "ok";
    }
  } catch (err) {
    if ((err as Error).name === "TimeoutError" || (err as Error).name === "AbortError") return "hang";
    return "none";
  } finally {
    stream.abort(new Error("case over"));
  }
}

async function generateValid(): Promise<string> {
  let text = "";
  for await (const e of (client.services.infer as InferService).infer(provider.peerId, REF, {
    kind: "generate",
    prompt: "Once upon a time",
    maxTokens: 8,
  }) as AsyncIterable<InferenceEvent>) {
    if (e.type === "token") text += e.text;
  }
  return text;
}

function memoryAfterGc(): { rss: number; objects: number } {
  Bun.gc(true);
  return { rss: process.memoryUsage().rss, objects: heapStats().objectCount };
}

test(`${CASES} hostile frames: the provider answers each, stays up, serves valid requests, keeps its memory`, async () => {
  const reference = await generateValid();
  const wrong: string[] = [];
  const tally = new Map<string, number>();
  const before = memoryAfterGc();
  for (let i = 0; i < CASES; i++) {
    const c = makeCase();
    const got = await send(c);
    tally.set(`${c.kind}: ${got}`, (tally.get(`${c.kind}: ${got}`) ?? 0) + 1);
    if (!c.codes.includes(got)) wrong.push(`case ${i} (${c.kind}): got ${got}, expected ${c.codes.join(" or ")}`);
    if (i % 100 === 99) expect(await generateValid()).toBe(reference);
  }
  expect(wrong).toEqual([]);
  expect(await generateValid()).toBe(reference);
  expect((provider.services.infer as InferService).load()).toMatchObject({ active: 0, queued: 0 });
  // Every case's stream is gone on the provider's side (the last one may still be closing).
  const open = () =>
    provider
      .getConnections()
      .flatMap((c) => c.streams)
      .filter((s) => s.protocol === INFER_PROTOCOL);
  const closed = await eventually(() => open().length === 0, 2_000);
  expect(
    closed ? [] : open().map((s) => `${s.direction} ${s.status} read ${s.readStatus} write ${s.writeStatus}`),
  ).toEqual([]);
  await Bun.sleep(LIBP2P_NEGOTIATION_HOLD_MS);
  const after = memoryAfterGc();
  const rss = (after.rss - before.rss) / 2 ** 20;
  const counts = [...tally].map(([k, n]) => `${k} x${n}`).join(", ");
  console.log(`fuzz: ${counts}; growth: RSS ${rss.toFixed(1)} MiB, ${after.objects - before.objects} heap objects`);
  expect(after.rss - before.rss).toBeLessThan(RSS_GROWTH_BOUND_BYTES);
  expect(after.objects - before.objects).toBeLessThan(OBJECT_GROWTH_BOUND);
}, 120_000);
