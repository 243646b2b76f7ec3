import { afterAll, beforeAll, expect, test } from "bun:test";
import OpenAI from "openai";
import { type NodeProcess, TestNetwork } from "./helpers/network.ts";

/**
 * 200 streaming requests at once through the API of a running node (`infernet start --api`) in front
 * of two stories260k providers (one slot and 16 queue places each): the gateway waits while every
 * provider is busy, so a burst far beyond the providers' capacity completes; the only errors allowed
 * are the documented 429/503 refusals. Every completed stream is the greedy text.
 */
const STREAMS = 200;
const MAX_TOKENS = 8;
const PROMPT = "Once upon a time";

let net: TestNetwork;
let gatewayNode: NodeProcess;
let client: OpenAI;

beforeAll(async () => {
  net = new TestNetwork();
  const first = await net.start("p1", ["--provider", "--models", "stories260k"], { INFERNET_THREADS: "1" });
  const second = await net.start("p2", ["--provider", "--models", "stories260k", "--bootstrap", first.quic], {
    INFERNET_THREADS: "1",
  });
  gatewayNode = await net.start("gateway", ["--bootstrap", first.quic, "--api", "0"]);
  await net.discoverable(first.quic, "stories260k", [first, second]);
  const url = (gatewayNode.status as unknown as { api: string }).api;
  client = new OpenAI({ baseURL: url, apiKey: "unused-on-loopback", maxRetries: 0, timeout: 120_000 });
}, 120_000);

afterAll(async () => {
  await net?.[Symbol.asyncDispose]();
});

test(`${STREAMS} concurrent streams complete with the greedy text; any error is an explicit 429 or 503`, async () => {
  const reference = await client.completions.create({ model: "stories260k", prompt: PROMPT, max_tokens: MAX_TOKENS });
  const want = reference.choices[0]!.text;
  expect(want.length).toBeGreaterThan(0);
  const outcomes = await Promise.all(
    Array.from({ length: STREAMS }, async () => {
      try {
        const stream = await client.completions.create({
          model: "stories260k",
          prompt: PROMPT,
          max_tokens: MAX_TOKENS,
          stream: true,
        });
        let text = "";
        for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
        return text === want ? "ok" : `wrong text: ${JSON.stringify(text)}`;
      } catch (err) {
        return err instanceof OpenAI.APIError && err.status !== undefined ? `status ${err.status}` : String(err);
      }
    }),
  );
  const counts = new Map<string, number>();
  for (const o of outcomes) counts.set(o, (counts.get(o) ?? 0) + 1);
  console.log(`${STREAMS} streams: ${[...counts].map(([k, n]) => `${n} ${k}`).join(", ")}`);
  for (const o of counts.keys()) expect(["ok", "status 429", "status 503"]).toContain(o);
  // The wait for busy providers (BUSY_WAIT_MS) is far longer than this burst needs.
  expect(counts.get("ok") ?? 0).toBe(STREAMS);
}, 120_000);
