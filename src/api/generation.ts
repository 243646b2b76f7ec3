import type { NetworkEvent } from "../node/client.ts";
import type { GenerateRequest } from "../runtime/engine.ts";
import { errorMessage } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import { ApiError } from "./openai.ts";

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
}

export type Runner = (
  model: { name: string; sha256: string },
  request: GenerateRequest,
  signal: AbortSignal,
) => AsyncIterable<NetworkEvent>;

export async function startGeneration(
  run: Runner,
  model: { id: string; sha256: string },
  request: Omit<GenerateRequest, "kind">,
  signal: AbortSignal,
): Promise<Generation> {
  const events = run({ name: model.id, sha256: model.sha256 }, { kind: "generate", ...request }, signal)[
    Symbol.asyncIterator
  ]();
  let first = await events.next();
  let provider: string | undefined;
  while (!first.done && first.value.type === "provider") {
    provider = first.value.peerId;
    first = await events.next();
  }
  return { events, first, headers: provider ? { [PROVIDER_HEADER]: provider } : {} };
}

/** The whole text and the final event. */
export async function collect(g: Generation): Promise<{ text: string; done: Done }> {
  let text = "";
  let done: Done | undefined;
  for (let e = g.first; !e.done; e = await g.events.next()) {
    if (e.value.type === "token") text += e.value.text;
    else if (e.value.type === "done") done = e.value;
  }
  if (!done) throw new ApiError(502, "the generation ended without a result", "server_error");
  return { text, done };
}

export interface Framing {
  /** Frames for a piece of text. */
  token(text: string): string[];
  /** Frames for the end of the generation. */
  done(event: Done): string[];
  /** Frames after the last event (OpenAI's `[DONE]`). */
  close(): string[];
  /** The frame that reports an error once the response has begun. */
  error(err: unknown): string;
}

/**
 * A response body that streams the generation through `framing`. Each pull enqueues at least one
 * frame (a pull that enqueues nothing is not called again), so events with nothing to send (a
 * failover's provider change, an empty token) are read past.
 */
export function streamBody(g: Generation, framing: Framing): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let pending: IteratorResult<NetworkEvent> | undefined = g.first;
  const send = (controller: ReadableStreamDefaultController<Uint8Array>, frames: string[]) => {
    for (const f of frames) controller.enqueue(encoder.encode(f));
    return frames.length > 0;
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        for (;;) {
          const e = pending ?? (await g.events.next());
          pending = undefined;
          if (e.done) {
            send(controller, framing.close());
            controller.close();
            return;
          }
          const event = e.value;
          if (event.type === "token" && event.text !== "" && send(controller, framing.token(event.text))) return;
          if (event.type === "done" && send(controller, framing.done(event))) return;
        }
      } catch (err) {
        // The status line is gone: the error is the stream's last frame.
        log.warn("stream failed", { err: errorMessage(err) });
        controller.enqueue(encoder.encode(framing.error(err)));
        controller.close();
      }
    },
    async cancel() {
      await g.events.return?.();
    },
  });
}
