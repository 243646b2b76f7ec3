import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { STORIES_GGUF, STORIES_SHA256 } from "../../../../test/helpers/paths.ts";
import { type Msat, msat } from "../../../payments/amount.ts";
import {
  CREDIT_TOKENS,
  DirectPayer,
  DirectPayments,
  newOffer,
  PAY_EVERY_TOKENS,
  promptBytes,
} from "../../../payments/direct.ts";
import { usagePrice } from "../../../payments/pricing.ts";
import type { GenerateRequest, InferenceEvent, LocalModel } from "../../../runtime/engine.ts";
import { createLlamaEngine, type LlamaEngine } from "../../../runtime/llama/engine.ts";
import { type InferService, inferProtocol, type RemoteInferenceError } from "./index.ts";
import { connect, type TestHost, testHost } from "./test-hosts.ts";

/**
 * Direct requests paid as they stream: real llama.cpp on stories260k behind real libp2p hosts over
 * QUIC. The payment channel is the one stand-in: a payment here credits the provider's
 * DirectPayments as its channel payee does once a state is stored (the channel itself is tested in
 * protocols/channel, and with real channels end to end in test/payments-direct.test.ts).
 */
const STORIES: LocalModel = { name: "stories260k", runtime: "llama", path: STORIES_GGUF, sha256: STORIES_SHA256 };
const REF = { name: "stories260k", sha256: STORIES_SHA256 };
/** 2 sat per 1,000 generated tokens (2 msat a token), 0.5 sat per 1,000 prompt tokens. */
const PRICE = { tokensOut: 2_000, tokensIn: 500 };
const WAIT_MS = 300;
const REQUEST: GenerateRequest = { kind: "generate", prompt: "Once upon a time", maxTokens: 64 };

let engine: LlamaEngine;
let provider: TestHost;
let client: TestHost;
let infer: InferService;
const payments = new DirectPayments();
let providerPeer: string;
let clientPeer: string;

beforeAll(async () => {
  engine = createLlamaEngine({ threads: 1 });
  provider = await testHost({
    infer: inferProtocol({
      served: () => new Map([[STORIES_SHA256, STORIES]]),
      engines: { llama: engine },
      charge: { payments, price: () => PRICE, waitMs: WAIT_MS },
    }),
  });
  client = await testHost({ infer: inferProtocol() });
  await connect(client, provider);
  infer = client.services.infer as InferService;
  providerPeer = provider.peerId.toString();
  clientPeer = client.peerId.toString();
  await engine.preload(STORIES);
});

afterAll(async () => {
  await Promise.all([client?.stop(), provider?.stop()]);
  await engine?.dispose();
});

/** A payer whose payments reach the provider as its channel payee would report them; `honest: false` never pays. */
function payer(budget: Msat, request: GenerateRequest = REQUEST, honest = true) {
  const sent: Msat[] = [];
  const offer = newOffer(PRICE, budget);
  const p = new DirectPayer(
    offer,
    async (amount) => {
      sent.push(amount);
      if (honest) payments.credit(clientPeer, `infer:${offer.id}`, amount);
    },
    promptBytes(request),
    "generate",
  );
  return { payer: p, sent };
}

async function run(request: GenerateRequest, options: { payer?: DirectPayer } = {}) {
  let text = "";
  let tokens = 0;
  let done: Extract<InferenceEvent, { type: "done" }> | undefined;
  for await (const e of infer.infer(provider.peerId, REF, request, options)) {
    if (e.type === "token") {
      text += e.text;
      tokens += e.tokens.length;
    } else if (e.type === "done") done = e;
  }
  return { text, tokens, done };
}

async function refusal(p: Promise<unknown>): Promise<RemoteInferenceError> {
  try {
    await p;
  } catch (err) {
    return err as RemoteInferenceError;
  }
  throw new Error("expected a refusal");
}

describe("a provider that charges for direct requests", () => {
  test("an honest client gets the same greedy text and pays its usage exactly, as it streams", async () => {
    const free = await engine.run(STORIES, REQUEST)[Symbol.asyncIterator]();
    let expected = "";
    for (let r = await free.next(); !r.done; r = await free.next())
      if (r.value.type === "token") expected += r.value.text;

    const { payer: p, sent } = payer(msat(1_000_000));
    const r = await run(REQUEST, { payer: p });
    expect(r.text).toBe(expected);
    const usage = r.done?.usage;
    if (!usage) throw new Error("no done");
    expect(usage.outputTokens).toBe(r.tokens);
    const due = usagePrice(PRICE, {
      tokensOut: usage.outputTokens,
      tokensIn: usage.inputTokens,
      computeMs: Math.ceil(usage.computeMs),
    });
    expect(p.paid()).toBe(due);
    expect(sent.reduce((a, b) => a + b, 0n)).toBe(due);
    // Paid as it streamed (a payment for each frame that crossed PAY_EVERY_TOKENS; frames carry
    // several tokens when they are coalesced), then the rest with the bill.
    expect(r.tokens).toBeGreaterThan(CREDIT_TOKENS);
    expect(sent.length).toBeGreaterThanOrEqual(2);
    expect(sent.length).toBeLessThanOrEqual(Math.ceil(r.tokens / PAY_EVERY_TOKENS) + 1);
  });

  test("the budget ends the generation where it runs out (finish length), never paying more", async () => {
    // 21 msat buys 10 tokens at 2 msat (21.999 rounds down to 21): the prompt's cost is capped with them.
    const budget = msat(21);
    const { payer: p } = payer(budget);
    const r = await run({ ...REQUEST, maxTokens: 200 }, { payer: p });
    expect(r.tokens).toBe(10);
    expect(r.done?.finishReason).toBe("length");
    expect(p.paid()).toBe(budget);
  });

  test("a client that stops paying gets at most CREDIT_TOKENS tokens, then payment-required", async () => {
    const { payer: p, sent } = payer(msat(1_000_000), REQUEST, false);
    let tokens = 0;
    const err = await refusal(
      (async () => {
        for await (const e of infer.infer(provider.peerId, REF, REQUEST, { payer: p })) {
          if (e.type === "token") tokens += e.tokens.length;
        }
      })(),
    );
    expect(err.code).toBe("payment-required");
    expect(err.message).toContain("was not paid");
    expect(tokens).toBeLessThanOrEqual(CREDIT_TOKENS);
    expect(tokens).toBeGreaterThan(0);
    expect(sent.length).toBeGreaterThan(0);
  });

  test("a request with no offer, or one below the provider's price, is refused before any work", async () => {
    const none = await refusal(run(REQUEST));
    expect(none.code).toBe("payment-required");
    expect(none.message).toContain("charges for stories260k");
    const cheap = new DirectPayer(newOffer({ tokensOut: 1_000 }, msat(1_000)), async () => {}, 16, "generate");
    const low = await refusal(run(REQUEST, { payer: cheap }));
    expect(low.code).toBe("payment-required");
    expect(low.message).toContain("below this provider's");
  });

  test("payments from another peer do not pay for this client's request", async () => {
    const offer = newOffer(PRICE, msat(1_000_000));
    const stranger = new DirectPayer(
      offer,
      async (amount) => payments.credit(providerPeer, `infer:${offer.id}`, amount),
      promptBytes(REQUEST),
      "generate",
    );
    const err = await refusal(run(REQUEST, { payer: stranger }));
    expect(err.code).toBe("payment-required");
  });
});
