import type { Connection, Stream } from "@libp2p/interface";
import {
  type DirectPayments,
  type DirectTab,
  offerFromWire,
  PAYMENT_WAIT_MS,
  PaymentDueError,
  type PaymentOffer,
} from "../../../payments/direct.ts";
import { formatPrice, type ModelPrice } from "../../../payments/pricing.ts";
import type { Engine, InferenceEvent, InferenceRequest, LocalModel, RuntimeName } from "../../../runtime/engine.ts";
import { unitsProduced } from "../../../runtime/engine-tap.ts";
import { AbortedError, errorMessage, InvalidInputError, TimeoutError } from "../../../util/errors.ts";
import { logger } from "../../../util/logger.ts";
import { errorFrame, type FrameSink, ProtocolError, readMessage, wireStream } from "../../wire.ts";
import { type WorkEntry, WorkLog } from "../../work-log.ts";
import { answerError, InboundJob } from "../inbound.ts";
import { Slots } from "../slots.ts";
import { MAX_REQUEST_FRAME_BYTES, type RemoteErrorCode, RequestMessageSchema, requestFromWire } from "./messages.ts";
import { coversPrice, metered, tokensWithin } from "./metered.ts";
import { pump } from "./pump.ts";

/**
 * The provider side of /infernet/infer/1.0.0: reads one request per stream, validates it, waits for a
 * compute slot (bounded concurrency, bounded FIFO queue), runs the engine and streams its events back.
 * The engine's AbortSignal fires when the client resets or closes the stream, the deadline passes, or
 * the service stops, so a cancelled request stops computing at once and frees its slot.
 */
const log = logger("node:infer");

/** The request frame must arrive this soon after the stream opens. */
export const REQUEST_READ_TIMEOUT_MS = 10_000;
/** Longest wait to flush a final frame (an error or after `done`) before the stream is reset. */
export const CLOSE_TIMEOUT_MS = 5_000;

export interface ProviderSettings {
  served: () => Map<string, LocalModel>;
  accepting: () => boolean;
  engines: Partial<Record<RuntimeName, Engine>>;
  maxConcurrent: number;
  maxQueued: number;
  requestTimeoutMs: number;
  /** Set when direct requests must be paid as they stream: the payments received, and each model's price. */
  charge?: {
    payments: DirectPayments;
    price: (model: LocalModel) => ModelPrice;
    /** Longest wait for a payment due (default PAYMENT_WAIT_MS). */
    waitMs?: number;
  };
}

/** Why a request was refused or failed, as the code and message of its error frame. */
class Refusal extends Error {
  constructor(
    readonly code: RemoteErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export class InferProvider {
  private readonly slots: Slots;
  private completed = 0;
  /** Requests this node accepted and then failed itself (engine error, its own deadline); refusals do not count. */
  private failures = 0;
  /** Requests in flight; each is aborted when the service stops. */
  private readonly jobs = new Set<AbortController>();
  /** What runs now and what ran last, for the dashboard. */
  readonly work = new WorkLog();

  constructor(private readonly settings: ProviderSettings) {
    this.slots = new Slots(settings.maxConcurrent, settings.maxQueued);
  }

  load(): { active: number; queued: number; maxConcurrent: number; served: number; failed: number } {
    return { ...this.slots.load(), served: this.completed, failed: this.failures };
  }

  /** Aborts every request in flight (they answer "internal: stopping" where the stream still works). */
  stop(): void {
    for (const job of this.jobs) job.abort(new AbortedError("the provider is stopping"));
  }

  readonly handle = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString();
    const lp = wireStream(stream, MAX_REQUEST_FRAME_BYTES);
    using job = new InboundJob(stream, this.jobs, REQUEST_READ_TIMEOUT_MS, "request");
    const { signal } = job;
    let release: (() => void) | undefined;
    let entry: WorkEntry | undefined;
    try {
      const message = await readMessage(lp, RequestMessageSchema, { signal });
      job.startBudget(Math.min(message.deadlineMs ?? this.settings.requestTimeoutMs, this.settings.requestTimeoutMs));
      if (!this.settings.accepting()) throw new Refusal("busy", "this provider has paused serving");
      const model = this.settings.served().get(message.model.sha256);
      const engine = model && this.settings.engines[model.runtime];
      if (!model || !engine) {
        throw new Refusal(
          "model-not-served",
          `this node does not serve ${message.model.name} (${message.model.sha256})`,
        );
      }
      const offer = message.payment ? offerFromWire(message.payment) : undefined;
      using tab = this.charge(peer, model, offer);
      const request = withinBudget(toRequest(message), tab ? offer : undefined);
      // A compute slot, waiting in the queue if all are busy; "busy" when the queue is full too.
      release = await this.slots.acquire(signal, () => {
        throw new Refusal(
          "busy",
          `all ${this.settings.maxConcurrent} slots and ${this.settings.maxQueued} queue places are taken`,
        );
      });
      log.debug("request", { peer, model: model.name, kind: request.kind });
      const generate = request.kind === "generate";
      const progress = this.work.begin({
        kind: "request",
        model: model.name,
        peer,
        unit: generate ? "tokens" : "records",
        total: generate ? request.maxTokens : request.kind === "embed" ? request.inputs.length : 1,
      });
      entry = progress;
      // The slot is free (and the request counted) once the engine is done, before `done` is written:
      // a client that has read `done` sees the provider's load without this request.
      const computed = release;
      const events = counted(engine.run(model, request, { signal }), progress);
      const waitMs = this.settings.charge?.waitMs ?? PAYMENT_WAIT_MS;
      const paid = offer && tab ? metered(events, { offer, tab, kind: request.kind, signal, waitMs }) : events;
      await pump(lp, paid, signal, () => {
        this.completed += 1;
        progress.end();
        computed();
      });
      await job.finish(CLOSE_TIMEOUT_MS);
    } catch (err) {
      release?.();
      entry?.end(job.reason(err));
      if (job.clientGone) stream.abort(job.gone);
      else await this.fail(stream, lp, job.reason(err), peer);
    } finally {
      release?.();
    }
  };

  /**
   * A paid request's tab, when this provider charges: a request that offers no payment, or a price
   * below this provider's, is refused with "payment-required". Undefined when it does not charge.
   */
  private charge(peer: string, model: LocalModel, offer: PaymentOffer | undefined): DirectTab | undefined {
    const charge = this.settings.charge;
    if (!charge) return undefined;
    const price = charge.price(model);
    if (!offer) {
      throw new Refusal(
        "payment-required",
        `this provider charges for ${model.name} (${formatPrice(price)}): offer a budget and pay over a channel to it`,
      );
    }
    if (!coversPrice(offer.price, price)) {
      throw new Refusal(
        "payment-required",
        `the price offered for ${model.name} is below this provider's (${formatPrice(price)}): read its record again`,
      );
    }
    try {
      return charge.payments.open(peer, offer.id);
    } catch (err) {
      throw new Refusal("bad-request", errorMessage(err));
    }
  }

  /** Counts a failure of this provider's own (not a refusal), logs, and answers with the error. */
  private async fail(stream: Stream, lp: FrameSink, err: unknown, peer: string): Promise<void> {
    const { code, message } = classify(err);
    if (code === "internal" || code === "timeout") this.failures += 1;
    if (code === "internal") log.warn("request failed", { peer, error: err });
    else log.debug("request refused", { peer, code, message });
    await answerError(stream, lp, errorFrame(code, message), CLOSE_TIMEOUT_MS);
  }
}

/** A paid generation ends where its budget does, at the offered rate (finish reason "length"). */
function withinBudget(request: InferenceRequest, offer: PaymentOffer | undefined): InferenceRequest {
  if (!offer || request.kind !== "generate") return request;
  return { ...request, maxTokens: Math.min(request.maxTokens ?? Number.MAX_SAFE_INTEGER, tokensWithin(offer)) };
}

function toRequest(message: Parameters<typeof requestFromWire>[0]): InferenceRequest {
  try {
    return requestFromWire(message);
  } catch (cause) {
    throw new Refusal("bad-request", `cannot read the request: ${errorMessage(cause)}`);
  }
}

function classify(err: unknown): { code: RemoteErrorCode; message: string } {
  if (err instanceof Refusal) return { code: err.code, message: err.message };
  if (err instanceof ProtocolError) {
    if (err.code === "unsupported-version") return { code: "unsupported-version", message: err.message };
    return { code: "bad-request", message: err.message };
  }
  if (err instanceof TimeoutError) return { code: "timeout", message: err.message };
  if (err instanceof PaymentDueError) return { code: "payment-required", message: err.message };
  if (err instanceof InvalidInputError) return { code: "invalid-input", message: err.message };
  if (err instanceof AbortedError) return { code: "internal", message: err.message };
  return { code: "internal", message: `${err instanceof Error ? err.name : "Error"}: ${errorMessage(err)}` };
}

/** The engine's events, passed through, counting what it produced into the request's work entry. */
async function* counted(events: AsyncIterable<InferenceEvent>, entry: WorkEntry): AsyncIterable<InferenceEvent> {
  for await (const event of events) {
    entry.add(unitsProduced(event));
    yield event;
  }
}
