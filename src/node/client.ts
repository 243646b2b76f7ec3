import { peerIdFromString } from "@libp2p/peer-id";
import { add, formatMsat, type Msat, sub, ZERO_MSAT } from "../payments/amount.ts";
import { DirectPayer, directMemo, newOffer, promptBytes } from "../payments/direct.ts";
import { ReputationStore } from "../reputation/store.ts";
import type { FinishReason, InferenceEvent, InferenceRequest, Usage } from "../runtime/engine.ts";
import { abortReason } from "../util/abort.ts";
import { errorMessage, InfernetError, NoProviderError, ProvidersBusyError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import { localReputation } from "./local-reputation.ts";
import type { InfernetNode } from "./node.ts";
import { type CapabilityRecord, unitPriceMsat } from "./protocols/capability/messages.ts";
import { RemoteInferenceError } from "./protocols/infer/errors.ts";
import type { ModelRef } from "./protocols/infer/index.ts";
import { rankProviders } from "./select.ts";

/**
 * Runs one request on the network with failover. The best provider (model served, price, latency,
 * reputation) gets it; if it fails before any output, the next one gets the same request; if it fails
 * mid-stream, the next one continues the same generation from the token ids already received (prompt +
 * tokens so far), so the caller sees one uninterrupted stream and the same greedy text a single
 * provider would give. Providers banned in this node's reputation store are never tried, and its own
 * record of a provider outweighs what the provider claims about itself (`rankingReputation`).
 */
const log = logger("node:client");

/** Providers tried at most for one request. */
export const MAX_PROVIDER_ATTEMPTS = 4;
/** Time allowed to find providers of a model. */
export const DISCOVERY_TIMEOUT_MS = 10_000;
/** Providers known from a record this recent are used at once (refreshed in the background). */
export const PROVIDERS_FRESH_MS = 30_000;
/**
 * Longest a request waits for latency probes before ranking: a provider that has not answered by then
 * ranks as one of unknown latency (a vanished one must not hold up every request for a ping timeout).
 */
export const LATENCY_PROBE_WAIT_MS = 1_000;

/** A generation without `maxTokens` is priced as this many tokens when providers are filtered by budget. */
export const BUDGET_FILTER_TOKENS = 256;

export interface NetworkRunOptions {
  /**
   * Most this request may cost: a provider whose full answer would cost more at its rate is skipped,
   * and one that charges (`requiresPayment`) is paid as the result streams, up to this, over this
   * node's channel to it (payments/direct.ts). Without it, only providers that charge nothing serve.
   */
  maxPriceMsat?: Msat;
  signal?: AbortSignal;
  /** Overall deadline for the whole request, all attempts included. */
  deadlineMs?: number;
  /** Told which provider is serving (again after each failover). */
  onProvider?: (record: CapabilityRecord, attempt: number) => void;
}

/** The events a caller sees: the engine's, plus which provider is serving. */
export type NetworkEvent =
  | InferenceEvent
  | { type: "provider"; peerId: string; attempt: number; resumedAt: number; satsPer1kTokens: number }
  /** Before `done` when providers were paid for the request: what went to each over its channel. */
  | { type: "paid"; peerId: string; paidMsat: string };

export async function* runOnNetwork(
  node: InfernetNode,
  model: ModelRef,
  request: InferenceRequest,
  options: NetworkRunOptions = {},
): AsyncGenerator<NetworkEvent> {
  const deadline = options.deadlineMs ? AbortSignal.timeout(options.deadlineMs) : undefined;
  const signal = anySignal(options.signal, deadline);
  const lookup = { ...(signal ? { signal } : {}), timeoutMs: DISCOVERY_TIMEOUT_MS };
  let found = await node.capability.knownProviders(model.sha256, { ...lookup, maxAgeMs: PROVIDERS_FRESH_MS });
  // Whether `found` came from a lookup this request waited for (once known providers ran out, it does).
  let looked = false;
  const failures: string[] = [];
  let busy = 0;
  const tried = new Set<string>();
  const generated: { tokens: number[]; text: string } = { tokens: [], text: "" };
  const usage: Usage = { inputTokens: 0, outputTokens: 0, computeMs: 0, firstOutputMs: 0 };
  const started = performance.now();
  const reputation = localReputation(new ReputationStore(node.store));
  const budget = options.maxPriceMsat;
  const priced = {
    sha256: model.sha256,
    ...(budget !== undefined ? { maxPrice: perUnitBudget(budget, request) } : {}),
  };
  // Providers that charge are asked only when this node can pay them: a budget, and a channel with room for it.
  const payable = (r: CapabilityRecord) =>
    !r.requiresPayment || (budget !== undefined && node.channels.channelTo(r.peerId, budget) !== undefined);
  let spent: Msat = ZERO_MSAT;

  for (let attempt = 1; attempt <= MAX_PROVIDER_ATTEMPTS; attempt++) {
    await Promise.race([
      Promise.all(found.map((r) => node.latencyTo(r.peerId, signal))),
      Bun.sleep(LATENCY_PROBE_WAIT_MS),
    ]);
    const [choice] = rankProviders(found.filter(payable), {
      ...priced,
      exclude: tried,
      latencyMs: (id) => node.knownLatency(id),
      reputation,
    });
    if (!choice) {
      if (looked) break;
      // Every provider known here was tried: ask the DHT, which may know others.
      looked = true;
      found = await node.capability.findProviders(model.sha256, lookup);
      attempt--;
      continue;
    }
    tried.add(choice.peerId);
    options.onProvider?.(choice, attempt);
    yield {
      type: "provider",
      peerId: choice.peerId,
      attempt,
      resumedAt: generated.tokens.length,
      satsPer1kTokens: unitPriceMsat(choice, model.sha256),
    };

    const attemptRequest = withResume(request, generated);
    const carried = generated.tokens.length;
    const payer =
      choice.requiresPayment && budget !== undefined
        ? directPayer(node, choice, model.sha256, attemptRequest, sub(budget, spent), signal)
        : undefined;
    try {
      for await (const event of node.infer.infer(peerIdFromString(choice.peerId), model, attemptRequest, {
        ...(signal ? { signal } : {}),
        ...(options.deadlineMs ? { deadlineMs: Math.max(1, options.deadlineMs - (performance.now() - started)) } : {}),
        ...(payer ? { payer } : {}),
      })) {
        if (event.type === "token") {
          if (usage.firstOutputMs === 0) usage.firstOutputMs = performance.now() - started;
          generated.tokens.push(...event.tokens);
          generated.text += event.text;
          yield event;
        } else if (event.type === "tensors") {
          if (usage.firstOutputMs === 0) usage.firstOutputMs = performance.now() - started;
          yield event;
        } else if (event.type === "logprobs") {
          yield event;
        } else {
          if (payer) {
            spent = add(spent, payer.paid());
            yield { type: "paid", peerId: choice.peerId, paidMsat: payer.paid().toString() };
          }
          yield {
            type: "done",
            finishReason: event.finishReason,
            usage: merge(usage, event.usage, carried, generated.tokens.length),
          };
          return;
        }
      }
      throw new InfernetError("the stream ended without a result");
    } catch (err) {
      if (payer) {
        // What was paid for tokens received stays paid: the next provider has that much less to earn.
        await payer.flush().catch(() => {});
        spent = add(spent, payer.paid());
        if (payer.paid() > 0n) yield { type: "paid", peerId: choice.peerId, paidMsat: payer.paid().toString() };
      }
      if (signal?.aborted) throw abortReason(signal);
      // A generation constrained to JSON cannot be continued elsewhere (the grammar starts afresh).
      if (request.kind === "generate" && request.format && generated.tokens.length > 0) throw err;
      failures.push(`${shortId(choice.peerId)}: ${errorMessage(err)}`);
      const wasBusy = err instanceof RemoteInferenceError && err.code === "busy";
      if (wasBusy) busy++;
      // A busy provider is normal under load (and retried): not worth a warning each time.
      (wasBusy ? log.debug : log.warn)("provider failed; trying another", {
        peerId: choice.peerId,
        attempt,
        tokensSoFar: generated.tokens.length,
        err: errorMessage(err),
      });
      if (request.kind === "generate" && remainingTokens(request, generated) === 0) {
        yield {
          type: "done",
          finishReason: "length" as FinishReason,
          usage: merge(usage, undefined, 0, generated.tokens.length),
        };
        return;
      }
    }
  }
  if (found.length === 0) {
    throw new NoProviderError(`no provider on the network serves ${model.name}`, {
      hint: "check --bootstrap, or run it locally with --local",
    });
  }
  const charging = found.filter((r) => !payable(r)).length;
  const payableInPrice = rankProviders(found.filter(payable), priced).length;
  if (failures.length === 0 && charging > 0 && payableInPrice === 0 && rankProviders(found, priced).length > 0) {
    throw new NoProviderError(
      budget === undefined
        ? `the providers of ${model.name} here charge for direct requests (${charging} of them): give --max-price to pay one`
        : `every provider of ${model.name} within your price charges, and this node has no open channel to one with ${formatMsat(budget)} left`,
      {
        hint: "open a channel with `infernet wallet fund <sats> --to <provider>`, then pay with --max-price",
      },
    );
  }
  // Nothing tried although some are within the price: every one of them is banned here.
  if (failures.length === 0 && payableInPrice > 0) {
    throw new NoProviderError(`every provider of ${model.name} within your price is banned here`, {
      hint: "see `infernet reputation` (bans expire on their own)",
    });
  }
  if (failures.length === 0) {
    throw new NoProviderError(
      `no provider of ${model.name} is within your price (${formatMsat(budget ?? ZERO_MSAT)})`,
      {
        hint: "raise --max-price",
      },
    );
  }
  if (busy === failures.length) {
    throw new ProvidersBusyError(`every provider of ${model.name} is busy (${failures.join("; ")})`, {
      hint: "try again shortly",
    });
  }
  throw new NoProviderError(`every provider of ${model.name} failed (${failures.join("; ")})`, {
    hint: "try again, or run it locally with --local",
  });
}

/** The budget per main unit of work (msat), for the price filter: a full answer must fit it. */
function perUnitBudget(budget: Msat, request: InferenceRequest): number {
  const units =
    request.kind === "generate"
      ? (request.maxTokens ?? BUDGET_FILTER_TOKENS)
      : request.kind === "tensor"
        ? (Object.values(request.inputs)[0]?.dims[0] ?? 1)
        : request.inputs.length;
  return Number(budget) / Math.max(1, units);
}

/** Pays `record`'s provider for this attempt over this node's channel to it, up to `budget`. */
function directPayer(
  node: InfernetNode,
  record: CapabilityRecord,
  sha256: string,
  request: InferenceRequest,
  budget: Msat,
  signal: AbortSignal | undefined,
): DirectPayer {
  const price = record.models.find((m) => m.sha256 === sha256)?.price ?? {};
  const offer = newOffer(price, budget);
  const memo = directMemo(offer.id);
  const pay = async (amount: Msat) => {
    await node.channels.pay(record.peerId, amount, memo, signal);
  };
  return new DirectPayer(offer, pay, promptBytes(request), request.kind);
}

/** After a failover mid-generation, the next provider continues from what was already received. */
function withResume(request: InferenceRequest, generated: { tokens: number[]; text: string }): InferenceRequest {
  if (request.kind !== "generate" || generated.tokens.length === 0) return request;
  const previous = request.resume ?? { tokens: [], text: "" };
  return {
    ...request,
    resume: { tokens: [...previous.tokens, ...generated.tokens], text: previous.text + generated.text },
    ...(request.maxTokens !== undefined ? { maxTokens: remainingTokens(request, generated) } : {}),
  };
}

function remainingTokens(request: InferenceRequest, generated: { tokens: number[] }): number | undefined {
  if (request.kind !== "generate" || request.maxTokens === undefined) return undefined;
  return Math.max(0, request.maxTokens - generated.tokens.length);
}

/**
 * Usage of the whole run: every token received counts once, whichever provider produced it; input is
 * the prompt as the user gave it (a resumed attempt also read the `carried` tokens again).
 */
function merge(total: Usage, last: Usage | undefined, carried: number, generatedTokens: number): Usage {
  return {
    inputTokens: last ? last.inputTokens - carried : total.inputTokens,
    outputTokens: generatedTokens > 0 ? generatedTokens : (last?.outputTokens ?? 0),
    computeMs: total.computeMs + (last?.computeMs ?? 0),
    firstOutputMs: total.firstOutputMs,
  };
}

function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal | undefined {
  const present = signals.filter((s): s is AbortSignal => s !== undefined);
  return present.length === 0 ? undefined : present.length === 1 ? present[0] : AbortSignal.any(present);
}

function shortId(peerId: string): string {
  return peerId.slice(-8);
}
