import type { NetworkEvent } from "../node/client.ts";
import type { GenerateRequest, InferenceRequest, Usage } from "../runtime/engine.ts";
import { errorMessage, ProvidersBusyError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import type { Ticket } from "./access.ts";
import { ApiError } from "./openai.ts";
import { slotQueue } from "./slot-queue.ts";

/**
 * One generation behind an HTTP response, whichever dialect (OpenAI SSE, Ollama NDJSON) frames it:
 * started on the network, the serving provider read before the first token (it goes in a header),
 * then either collected whole or streamed frame by frame. A client that disconnects aborts it.
 */
const log = logger("api");

/** Header naming the provider that served a request. */
export const PROVIDER_HEADER = "x-infernet-provider";

export type Done = Extract<NetworkEvent, { type: "done" }>;

export interface Generation {
  events: AsyncIterator<NetworkEvent>;
  first: IteratorResult<NetworkEvent>;
  headers: Record<string, string>;
  /** Cancels it on the provider now (its events end with an abort). */
  stop(): void;
}

export type Runner = (
  model: { name: string; sha256: string },
  request: InferenceRequest,
  signal: AbortSignal,
) => AsyncIterable<NetworkEvent>;

/** Longest a generation may run through the gateway, all failovers included (then 504). */
export const GENERATION_DEADLINE_MS = 10 * 60_000;
/**
 * Longest a response's consumer may leave the next frame untaken while the generation has more to
 * send; then the generation is cancelled, so a stalled reader cannot hold a provider. Measured under
 * Bun.serve (1.4): the server keeps taking frames from the stream whether or not the client reads
 * (it buffers them), so there a stalled client does not stall the generation at all: it runs to its
 * end and the unread frames (at most max_tokens of them) wait in the gateway until the client goes.
 */
export const SLOW_READER_MS = 30_000;
/** Longest a request waits, retrying, while every provider says it is busy (then 503 with Retry-After). */
export const BUSY_WAIT_MS = 30_000;
/**
 * While providers are busy a request tries again when one of this gateway's generations of the model
 * ends (see slot-queue.ts), or after this pause, doubled each time up to BUSY_MAX_RETRY_MS (each
 * jittered by up to half again).
 */
export const BUSY_RETRY_MS = 250;
export const BUSY_MAX_RETRY_MS = 2_000;

export async function startGeneration(
  run: Runner,
  model: { id: string; sha256: string },
  request: Omit<GenerateRequest, "kind"> & { maxTokens: number },
  signal: AbortSignal,
  ticket: Ticket,
): Promise<Generation> {
  const deadline = AbortSignal.timeout(GENERATION_DEADLINE_MS);
  const stopper = new AbortController();
  const runSignal = AbortSignal.any([signal, deadline, stopper.signal]);
  const events = metered(
    () => run({ name: model.id, sha256: model.sha256 }, { kind: "generate", ...request }, runSignal),
    { ticket, maxUnits: request.maxTokens, signal: runSignal, deadline, model: model.sha256 },
  );
  let first = await events.next();
  let provider: string | undefined;
  while (!first.done && first.value.type === "provider") {
    provider = first.value.peerId;
    first = await events.next();
  }
  return {
    events,
    first,
    headers: provider ? { [PROVIDER_HEADER]: provider } : {},
    stop: () => {
      stopper.abort(new ApiError(499, "the request was cancelled"));
      // Runs its cleanup (the ticket released) even where nobody reads it again.
      events.return(undefined).catch(() => {});
    },
  };
}

/** How `metered` accounts for one run. */
export interface Metering {
  ticket: Ticket;
  /** The most work units (generated tokens, unless `billed` says otherwise) it may be charged for. */
  maxUnits: number;
  signal: AbortSignal;
  deadline: AbortSignal;
  /** Units charged for a finished run (default: tokens generated). */
  billed?: (usage: Usage) => number;
  /** The model's sha256: where it waits while every provider is busy. */
  model: string;
}

/**
 * The run's events, with the key's accounting, priced as the job reports price work (tokens generated
 * at the provider's price; what `billed` says for other work): each provider's price reserves
 * `maxUnits` of it, what was generated is charged (the tokens that came, when it ends early), and the
 * ticket is released however it ends. While every provider is busy and nothing was generated yet, the
 * run waits in the model's slot queue and is tried again (a burst of requests waits for slots instead
 * of failing at once). A deadline that passes is a 504. One generator for all of it: each layer of
 * async iteration costs every token a little.
 */
export async function* metered(run: () => AsyncIterable<NetworkEvent>, m: Metering): AsyncGenerator<NetworkEvent> {
  const { ticket, signal, deadline } = m;
  const billed = m.billed ?? ((usage: Usage) => usage.outputTokens);
  let received = 0;
  let finished = false;
  let served = false;
  const since = performance.now();
  const giveUp = since + BUSY_WAIT_MS;
  let backoff = BUSY_RETRY_MS;
  try {
    for (;;) {
      try {
        for await (const e of run()) {
          if (e.type === "provider") ticket.priced(e.satsPer1kTokens, m.maxUnits);
          else {
            // A provider took it: when it ends, its slot frees up for a waiter.
            served = true;
            if (e.type === "token") received += e.tokens.length;
          }
          if (e.type === "done") {
            ticket.charge(billed(e.usage));
            finished = true;
          }
          yield e;
        }
        return;
      } catch (err) {
        const busy = err instanceof ProvidersBusyError && received === 0 && !signal.aborted;
        if (!busy || performance.now() > giveUp) throw err;
      }
      await slotQueue.wait(m.model, since, backoff * (1 + Math.random() / 2), signal);
      backoff = Math.min(backoff * 2, BUSY_MAX_RETRY_MS);
    }
  } catch (err) {
    if (deadline.aborted) {
      throw new ApiError(
        504,
        `the generation ran past ${GENERATION_DEADLINE_MS / 1000} s`,
        "timeout",
        null,
        "deadline_exceeded",
      );
    }
    throw err;
  } finally {
    if (!finished) ticket.charge(received);
    ticket[Symbol.dispose]();
    if (served) slotQueue.freed(m.model);
  }
}

/**
 * Starts `n` generations of one request, each holding its own ticket (n > 1 counts n against a key's
 * limits). With sampling, choice i uses seed + i so the choices differ and each is reproducible;
 * greedy choices are all the same text. If one cannot start, the others are stopped.
 */
export async function startGenerations(
  run: Runner,
  model: { id: string; sha256: string },
  request: Omit<GenerateRequest, "kind"> & { maxTokens: number },
  signal: AbortSignal,
  tickets: Ticket[],
): Promise<Generation[]> {
  const started = await Promise.allSettled(
    tickets.map((ticket, i) =>
      startGeneration(
        run,
        model,
        i > 0 && request.seed !== undefined ? { ...request, seed: (request.seed + i) % 2 ** 32 } : request,
        signal,
        ticket,
      ),
    ),
  );
  const failed = started.find((r) => r.status === "rejected");
  if (!failed) return started.map((r) => (r as PromiseFulfilledResult<Generation>).value);
  for (const r of started) if (r.status === "fulfilled") r.value.stop();
  throw failed.reason;
}

/** The providers that serve a set of generations, as the response header says them. */
export function providerHeaders(gs: readonly Generation[]): Record<string, string> {
  const ids = [...new Set(gs.map((g) => g.headers[PROVIDER_HEADER]).filter((p): p is string => p !== undefined))];
  return ids.length ? { [PROVIDER_HEADER]: ids.join(",") } : {};
}

export type Logprobs = Extract<NetworkEvent, { type: "logprobs" }>["tokens"];

/** The whole text, the final event, and the log-probabilities when they were asked for. */
export async function collect(g: Generation): Promise<{ text: string; done: Done; logprobs?: Logprobs }> {
  let text = "";
  let done: Done | undefined;
  let logprobs: Logprobs | undefined;
  for (let e = g.first; !e.done; e = await g.events.next()) {
    if (e.value.type === "token") text += e.value.text;
    else if (e.value.type === "logprobs") logprobs = e.value.tokens;
    else if (e.value.type === "done") done = e.value;
  }
  if (!done) throw new ApiError(502, "the generation ended without a result", "server_error");
  return { text, done, ...(logprobs ? { logprobs } : {}) };
}

export interface Framing {
  /** Frames for a piece of choice `index`'s text. */
  token(text: string, index: number): string[];
  /** Frames for choice `index`'s log-probabilities (they come after its last token). */
  logprobs?(tokens: Logprobs, index: number): string[];
  /** Frames for the end of choice `index`. */
  done(event: Done, index: number): string[];
  /** Frames after the last event (OpenAI's `[DONE]`). */
  close(): string[];
  /** The frame that reports an error once the response has begun. */
  error(err: unknown): string;
}

/**
 * A response body that streams generations (the choices of one request) through `framing`, each
 * frame as soon as its choice produces it. Each pull enqueues at least one frame (a pull that enqueues
 * nothing is not called again), so events with nothing to send (a failover's provider change, an
 * empty token) are read past. A reader that does not come back for the next frame within
 * `slowReaderMs` loses the generations (they are cancelled; the stream errors). One choice failing
 * ends the response with an error frame and stops the others.
 */
export function streamBody(
  generations: readonly Generation[],
  framing: Framing,
  slowReaderMs = SLOW_READER_MS,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  type Next = { index: number; result: IteratorResult<NetworkEvent> };
  // The next event of every choice still running (each asked for once the previous one arrived).
  const next = new Map<number, Promise<Next>>(
    generations.map((g, index) => [index, Promise.resolve({ index, result: g.first })]),
  );
  const ask = (index: number) => {
    const g = generations[index]!;
    const pending = g.events.next().then((result) => ({ index, result }));
    // Nobody may be waiting for it any more (the response was cancelled): a rejection is not unhandled.
    pending.catch(() => {});
    next.set(index, pending);
  };
  const stopAll = () => {
    for (const g of generations) g.stop();
  };
  let stall: Timer | undefined;
  const send = (controller: ReadableStreamDefaultController<Uint8Array>, frames: string[]) => {
    for (const f of frames) controller.enqueue(encoder.encode(f));
    return frames.length > 0;
  };
  const waitForReader = (controller: ReadableStreamDefaultController<Uint8Array>) => {
    stall = setTimeout(() => {
      log.warn("the client stopped reading; generation cancelled", { afterMs: slowReaderMs });
      stopAll();
      controller.error(new Error(`the client read nothing for ${slowReaderMs} ms`));
    }, slowReaderMs);
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        clearTimeout(stall);
        try {
          while (next.size > 0) {
            // One choice (the usual case) needs no race: its next event is the next frame.
            const { index, result } =
              next.size === 1 ? await next.values().next().value! : await Promise.race(next.values());
            if (result.done) {
              next.delete(index);
              continue;
            }
            ask(index);
            const event = result.value;
            const sent =
              (event.type === "token" && event.text !== "" && send(controller, framing.token(event.text, index))) ||
              (event.type === "logprobs" && send(controller, framing.logprobs?.(event.tokens, index) ?? [])) ||
              (event.type === "done" && send(controller, framing.done(event, index)));
            if (sent) {
              waitForReader(controller);
              return;
            }
          }
          send(controller, framing.close());
          controller.close();
        } catch (err) {
          // The status line is gone: the error is the stream's last frame.
          log.warn("stream failed", { err: errorMessage(err) });
          stopAll();
          controller.enqueue(encoder.encode(framing.error(err)));
          controller.close();
        }
      },
      async cancel() {
        clearTimeout(stall);
        stopAll();
      },
    },
    // Nothing queued ahead of the reader: the next frame is computed when the last one was taken.
    { highWaterMark: 0 },
  );
}
