import { add, sub } from "../../../payments/amount.ts";
import { billFor, CREDIT_TOKENS, type DirectTab, type PaymentOffer, streamedCost } from "../../../payments/direct.ts";
import { type ModelPrice, PRICE_UNITS, usagePrice } from "../../../payments/pricing.ts";
import type { InferenceEvent, InferenceRequest } from "../../../runtime/engine.ts";
import type { WireEvent } from "./messages.ts";
import { MAX_TOKENS } from "./messages.ts";

/**
 * The provider's side of a paid direct request (see payments/direct.ts): tokens leave while what was
 * sent runs at most CREDIT_TOKENS tokens' worth ahead of what was paid; everything else (tensors,
 * embeddings) and `done` wait for the bill to be paid.
 */
export interface MeterSettings {
  offer: PaymentOffer;
  tab: DirectTab;
  kind: InferenceRequest["kind"];
  signal: AbortSignal;
  /** Longest wait for a payment due (PAYMENT_WAIT_MS in production). */
  waitMs: number;
}

export async function* metered(
  events: AsyncIterable<InferenceEvent>,
  { offer, tab, kind, signal, waitMs }: MeterSettings,
): AsyncGenerator<WireEvent> {
  const credit = usagePrice(offer.price, { tokensOut: CREDIT_TOKENS });
  let sent = 0;
  const held: InferenceEvent[] = [];
  for await (const event of events) {
    if (event.type === "token") {
      const owed = streamedCost(offer, sent + event.tokens.length);
      if (owed > add(tab.paid(), credit)) await tab.waitFor(sub(owed, credit), signal, waitMs);
      sent += event.tokens.length;
      yield event;
    } else if (event.type === "done") {
      const owedMsat = billFor(offer, kind, event.usage);
      yield { type: "bill", owedMsat, usage: event.usage };
      await tab.waitFor(owedMsat, signal, waitMs);
      yield* held;
      yield event;
    } else if (kind === "generate") yield event;
    else held.push(event);
  }
}

/** Whether `offered` pays at least `price` for every unit. */
export function coversPrice(offered: ModelPrice, price: ModelPrice): boolean {
  return PRICE_UNITS.every((u) => (offered[u] ?? 0) >= (price[u] ?? 0));
}

/** Most generated tokens the budget buys at the offered rate (MAX_TOKENS when they are free). */
export function tokensWithin(offer: PaymentOffer): number {
  const rate = BigInt(offer.price.tokensOut ?? 0);
  if (rate === 0n) return MAX_TOKENS;
  // usagePrice rounds rate x n / 1,000 down: n tokens fit while rate x n < (max + 1) x 1,000.
  const n = ((offer.maxMsat + 1n) * 1_000n - 1n) / rate;
  return Number(n < BigInt(MAX_TOKENS) ? n : BigInt(MAX_TOKENS));
}
