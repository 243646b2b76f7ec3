import { describe, expect, test } from "bun:test";
import { metered, tokensWithin } from "../node/protocols/infer/metered.ts";
import type { InferenceEvent } from "../runtime/engine.ts";
import { type Msat, msat } from "./amount.ts";
import { billFor, DirectPayer, DirectPayments, newOffer, PaymentDueError, TEMPLATE_TOKEN_ALLOWANCE } from "./direct.ts";
import { usagePrice } from "./pricing.ts";

const PRICE = { tokensOut: 2_000, tokensIn: 500, computeSeconds: 1_000 };
const usage = (outputTokens: number, inputTokens = 5, computeMs = 40) => ({
  inputTokens,
  outputTokens,
  computeMs,
  firstOutputMs: 1,
});

function payer(budget = msat(1_000_000), kind: "generate" | "tensor" = "generate") {
  const sent: Msat[] = [];
  const p = new DirectPayer(
    newOffer(PRICE, budget),
    async (a) => {
      sent.push(a);
    },
    20,
    kind,
  );
  return { p, sent };
}

describe("the client's side of a paid request", () => {
  test("pays what the tokens cost each PAY_EVERY_TOKENS, then the bill's rest; never twice", async () => {
    const { p, sent } = payer();
    for (let i = 0; i < 20; i++) p.received(1);
    await p.flush();
    // 8 and 16 tokens crossed: 16 msat then 16 more.
    expect(sent).toEqual([msat(16), msat(16)]);
    const bill = billFor(p.offer, "generate", usage(20));
    await p.settle(bill, usage(20), 1_000);
    expect(p.paid()).toBe(usagePrice(PRICE, { tokensOut: 20, tokensIn: 5, computeMs: 40 }));
    expect(sent.reduce((a, b) => a + b, 0n)).toBe(p.paid());
    await p.settle(bill, usage(20), 1_000);
    expect(sent).toHaveLength(3);
  });

  test("a bill that miscounts tokens, claims too many prompt tokens or compute, or overcharges is refused unpaid", async () => {
    const cases: [string, ReturnType<typeof usage>, bigint | undefined][] = [
      ["counts 11 tokens; 10 arrived", usage(11), undefined],
      ["prompt tokens", usage(10, 20 + TEMPLATE_TOKEN_ALLOWANCE + 1), undefined],
      ["ms of compute", usage(10, 5, 5_000), undefined],
      ["its usage costs", usage(10), 1n],
    ];
    for (const [says, u, extra] of cases) {
      const { p, sent } = payer();
      p.received(10);
      await p.flush();
      const before = sent.length;
      const asked = msat(billFor(p.offer, "generate", u) + (extra ?? 0n));
      await expect(p.settle(asked, u, 1_000)).rejects.toThrow(says);
      expect(sent).toHaveLength(before);
    }
  });

  test("the bill is capped at the budget, and the budget buys whole tokens", () => {
    const offer = newOffer(PRICE, msat(21));
    expect(tokensWithin(offer)).toBe(10);
    expect(billFor(offer, "generate", usage(10, 1_000))).toBe(msat(21));
    expect(tokensWithin(newOffer({ tokensIn: 5 }, msat(1)))).toBe(131_072);
  });
});

describe("the provider's side", () => {
  test("a tab counts only its own peer's payments for its id, and wakes a waiting request", async () => {
    const payments = new DirectPayments();
    using tab = payments.open("client", "a".repeat(32));
    expect(() => payments.open("client", "a".repeat(32))).toThrow("already in use");
    payments.credit("other", `infer:${"a".repeat(32)}`, msat(5));
    payments.credit("client", "deposit", msat(5));
    expect(tab.paid()).toBe(msat(0));
    const waiting = tab.waitFor(msat(7), new AbortController().signal, 5_000);
    payments.credit("client", `infer:${"a".repeat(32)}`, msat(7));
    await waiting;
    expect(tab.paid()).toBe(msat(7));
    await expect(tab.waitFor(msat(8), new AbortController().signal, 20)).rejects.toBeInstanceOf(PaymentDueError);
  });

  test("tensors and done wait for the bill to be paid; an unpaid bill ends the request without them", async () => {
    const outputs = { y: { type: "float32" as const, dims: [1], data: new Float32Array([1]) } };
    async function* engine(): AsyncGenerator<InferenceEvent> {
      yield { type: "tensors", outputs };
      yield { type: "done", usage: usage(3, 3), finishReason: "stop" };
    }
    const payments = new DirectPayments();
    const offer = newOffer({ inferences: 1_000_000 }, msat(10_000));
    const seen: string[] = [];
    {
      using tab = payments.open("c", offer.id);
      const signal = new AbortController().signal;
      for await (const e of metered(engine(), { offer, tab, kind: "tensor", signal, waitMs: 1_000 })) {
        seen.push(e.type);
        if (e.type === "bill") {
          expect(e.owedMsat).toBe(msat(3_000));
          payments.credit("c", `infer:${offer.id}`, e.owedMsat);
        }
      }
    }
    expect(seen).toEqual(["bill", "tensors", "done"]);
    seen.length = 0;
    using unpaid = payments.open("c", "b".repeat(32));
    const signal = new AbortController().signal;
    await expect(
      (async () => {
        for await (const e of metered(engine(), { offer, tab: unpaid, kind: "tensor", signal, waitMs: 20 }))
          seen.push(e.type);
      })(),
    ).rejects.toBeInstanceOf(PaymentDueError);
    expect(seen).toEqual(["bill"]);
  });
});
