import { randomBytes } from "node:crypto";
import type { Usage as EngineUsage, InferenceRequest } from "../runtime/engine.ts";
import { abortReason } from "../util/abort.ts";
import { InfernetError, InvalidInputError } from "../util/errors.ts";
import { add, type Msat, min, msat, sub, ZERO_MSAT } from "./amount.ts";
import { type ModelPrice, type Usage, usagePrice } from "./pricing.ts";

/**
 * Direct requests paid as they stream (client -> provider, no aggregator), over a payment channel
 * from the client to the provider. The request offers a budget and the price the client saw in the
 * provider's signed record; each side counts the same tokens at that price:
 *
 * - the client pays, over the channel, what the tokens it has received cost, every PAY_EVERY_TOKENS
 *   tokens (memo `infer:<request id>`);
 * - the provider lets what it has sent run ahead of what it was paid by at most CREDIT_TOKENS
 *   tokens' worth, and pauses the generation (up to PAYMENT_WAIT_MS) when it would run further;
 * - before its last frame (`done`; for tensors and embeddings, the results too) the provider sends
 *   the bill for the whole usage (prompt tokens, compute time), capped at the budget, and waits for
 *   it to be paid. The client checks the bill against its own count before it pays.
 *
 * So a provider risks at most CREDIT_TOKENS tokens of work to a client that stops paying, a client
 * never pays more than its budget or for tokens it did not receive, and the generation stops when
 * the budget is spent (finish reason `length`).
 */

/** The client pays once this many tokens arrived unpaid. */
export const PAY_EVERY_TOKENS = 8;
/** The provider streams at most this many tokens past what it was paid for. */
export const CREDIT_TOKENS = 32;
/** Longest a provider waits for a payment it is due before it ends the request. */
export const PAYMENT_WAIT_MS = 10_000;
/** A memo's prefix naming the direct request a payment is for. */
export const DIRECT_MEMO_PREFIX = "infer:";
/** A request's payment id: 32 hex digits, random per request. */
export const PAYMENT_ID = /^[0-9a-f]{32}$/;
/** Prompt tokens a bill may claim beyond one per byte of the prompt (chat template, special tokens). */
export const TEMPLATE_TOKEN_ALLOWANCE = 256;

/** What a request offers to pay. */
export interface PaymentOffer {
  id: string;
  maxMsat: Msat;
  /** The provider's price as the client saw it in its signed record. */
  price: ModelPrice;
}

/** The work a request did, as priced: generated and prompt tokens, or inferences; compute time. */
export function pricedUsage(kind: "generate" | "embed" | "tensor", usage: EngineUsage): Usage {
  const computeMs = Math.ceil(usage.computeMs);
  if (kind === "generate") return { tokensOut: usage.outputTokens, tokensIn: usage.inputTokens, computeMs };
  if (kind === "embed") return { tokensIn: usage.inputTokens, computeMs };
  return { inferences: usage.outputTokens, computeMs };
}

/** What `tokens` generated tokens cost at `price`, within the budget. */
export function streamedCost(offer: PaymentOffer, tokens: number): Msat {
  return min(usagePrice(offer.price, { tokensOut: tokens }), offer.maxMsat);
}

/** The whole request's bill: its usage at the offered price, capped at the budget. */
export function billFor(offer: PaymentOffer, kind: "generate" | "embed" | "tensor", usage: EngineUsage): Msat {
  return min(usagePrice(offer.price, pricedUsage(kind, usage)), offer.maxMsat);
}

/** The memo of a payment for request `id`. */
export function directMemo(id: string): string {
  return `${DIRECT_MEMO_PREFIX}${id}`;
}

/** A provider's request ran out of what the client paid (`payment-required` on the wire). */
export class PaymentDueError extends InfernetError {}

interface Tab {
  paid: Msat;
  wake: (() => void) | undefined;
}

/**
 * A provider's view of what clients paid for their direct requests: the channel's payee reports
 * each payment once it is stored (`credit`), and a request waits until it is covered (`waitFor`).
 * Keyed by the paying peer and the request id, so no one pays or claims for another's request.
 */
export class DirectPayments {
  private readonly tabs = new Map<string, Tab>();

  /** Starts counting payments for request `id` from `peer`; dispose it when the request ends. */
  open(peer: string, id: string): DirectTab {
    const key = `${peer}:${id}`;
    if (this.tabs.has(key)) throw new InvalidInputError(`payment id ${id} is already in use by this peer`);
    const tab: Tab = { paid: ZERO_MSAT, wake: undefined };
    this.tabs.set(key, tab);
    return {
      paid: () => tab.paid,
      waitFor: (amount, signal, timeoutMs) => waitFor(tab, amount, signal, timeoutMs),
      [Symbol.dispose]: () => {
        tab.wake?.();
        this.tabs.delete(key);
      },
    };
  }

  /** A payment arrived (stored and booked); one for a request not open here is income all the same. */
  credit(peer: string, memo: string, amount: Msat): void {
    if (!memo.startsWith(DIRECT_MEMO_PREFIX)) return;
    const tab = this.tabs.get(`${peer}:${memo.slice(DIRECT_MEMO_PREFIX.length)}`);
    if (!tab) return;
    tab.paid = add(tab.paid, amount);
    tab.wake?.();
  }
}

export interface DirectTab extends Disposable {
  paid(): Msat;
  /** Resolves once `amount` is paid; `PaymentDueError` after `timeoutMs`, the signal's reason on abort. */
  waitFor(amount: Msat, signal: AbortSignal, timeoutMs: number): Promise<void>;
}

async function waitFor(tab: Tab, amount: Msat, signal: AbortSignal, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (tab.paid < amount) {
    if (signal.aborted) throw abortReason(signal);
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new PaymentDueError(`${sub(amount, tab.paid)} msat of ${amount} due was not paid within ${timeoutMs} ms`);
    }
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        tab.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, left);
      signal.addEventListener("abort", done, { once: true });
      tab.wake = done;
    });
  }
}

/**
 * A client's side of one paid request: counts the tokens received, pays what they cost as they
 * arrive, and checks the provider's final bill against its own count before paying the rest.
 */
export class DirectPayer {
  private tokens = 0;
  private paidMsat: Msat = ZERO_MSAT;
  /** Payments for streamed tokens, one after another. */
  private queue: Promise<void> = Promise.resolve();
  private failure: { err: unknown } | undefined;
  private fail: (err: unknown) => void = () => {};
  /** Rejects with the first payment that failed: the caller stops reading (the provider would stall). */
  readonly broken: Promise<never> = new Promise<never>((_, reject) => {
    this.fail = reject;
  });

  constructor(
    readonly offer: PaymentOffer,
    private readonly pay: (amount: Msat) => Promise<void>,
    /** Bytes of the prompt (its system text and history included): a bound on its tokens. */
    private readonly promptBytes: number,
    private readonly kind: "generate" | "embed" | "tensor",
  ) {
    this.broken.catch(() => {});
  }

  paid(): Msat {
    return this.paidMsat;
  }

  /**
   * `n` more tokens arrived: once PAY_EVERY_TOKENS are unpaid, a payment for them is queued behind
   * the ones before it (reading the stream goes on meanwhile); a payment that failed is thrown here.
   */
  received(n: number): void {
    this.failed();
    const before = this.tokens;
    this.tokens += n;
    if (Math.floor(this.tokens / PAY_EVERY_TOKENS) === Math.floor(before / PAY_EVERY_TOKENS)) return;
    const total = streamedCost(this.offer, this.tokens);
    this.queue = this.queue
      .then(() => (this.failure ? undefined : this.payUpTo(total)))
      .catch((err) => {
        this.failure ??= { err };
        this.fail(err);
      });
  }

  /** Waits for the queued payments; throws the first that failed. */
  async flush(): Promise<void> {
    await this.queue;
    this.failed();
  }

  private failed(): void {
    if (this.failure) throw this.failure.err;
  }

  /**
   * The provider's bill for the whole request: it must count the tokens this client received, claim
   * no more prompt tokens than the prompt has bytes (plus a template's), and price them as offered.
   */
  async settle(billMsat: Msat, usage: EngineUsage, elapsedMs: number): Promise<void> {
    if (this.kind === "generate" && usage.outputTokens !== this.tokens) {
      throw new InvalidInputError(`the bill counts ${usage.outputTokens} tokens; ${this.tokens} arrived`);
    }
    if (usage.inputTokens > this.promptBytes + TEMPLATE_TOKEN_ALLOWANCE && this.kind !== "tensor") {
      throw new InvalidInputError(
        `the bill claims ${usage.inputTokens} prompt tokens for a prompt of ${this.promptBytes} bytes`,
      );
    }
    if (usage.computeMs > elapsedMs) {
      throw new InvalidInputError(`the bill claims ${Math.round(usage.computeMs)} ms of compute in ${elapsedMs} ms`);
    }
    const due = billFor(this.offer, this.kind, usage);
    if (billMsat !== due) throw new InvalidInputError(`the bill asks ${billMsat} msat; its usage costs ${due}`);
    await this.flush();
    await this.payUpTo(due);
  }

  private async payUpTo(total: Msat): Promise<void> {
    if (total <= this.paidMsat) return;
    const amount = sub(total, this.paidMsat);
    await this.pay(amount);
    this.paidMsat = total;
  }
}

/** An offer of `budget` at `price` under a fresh random id. */
export function newOffer(price: ModelPrice, budget: Msat): PaymentOffer {
  return { id: randomBytes(16).toString("hex"), maxMsat: budget, price };
}

/**
 * Bytes of what a request asks the provider to read (prompt, system text, history, carried-over
 * text and tokens): a bound on the prompt tokens a bill may claim.
 */
export function promptBytes(request: InferenceRequest): number {
  const bytes = (text: string | undefined) => (text === undefined ? 0 : Buffer.byteLength(text));
  if (request.kind === "embed") return request.inputs.reduce((n, x) => n + bytes(x), 0);
  if (request.kind === "tensor") return 0;
  const history = (request.history ?? []).reduce((n, m) => n + bytes(m.content), 0);
  const resume = request.resume ? bytes(request.resume.text) + request.resume.tokens.length : 0;
  return bytes(request.prompt) + bytes(request.system) + history + resume;
}

/** A budget's msat from its wire text. */
export function offerFromWire(wire: { id: string; maxMsat: string; price: ModelPrice }): PaymentOffer {
  return { id: wire.id, maxMsat: msat(wire.maxMsat, "payment.maxMsat"), price: wire.price };
}
