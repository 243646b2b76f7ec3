import { errorMessage, InfernetError, InvalidInputError } from "../../util/errors.ts";
import { CONTROL_HEARTBEAT_MS } from "./protocol.ts";

/**
 * The control API's streamed replies and bodies: newline-delimited JSON. A streamed reply sends a
 * heartbeat line whenever it has been quiet for `CONTROL_HEARTBEAT_MS` (Bun drops a connection idle
 * for 10 s, and a queued run or a quiet job says nothing for longer), ends with an error line when
 * the work fails, and stops the work through the request's signal when the client goes away.
 */

/** The error line every stream ends with on failure; the client rebuilds the typed error from it. */
export interface ErrorLine {
  type: "error";
  name: string;
  message: string;
  hint?: string;
}

export function errorLine(err: unknown): ErrorLine {
  return {
    type: "error",
    name: err instanceof Error ? err.name : "Error",
    message: errorMessage(err),
    ...(err instanceof InfernetError && err.hint ? { hint: err.hint } : {}),
  };
}

/** A streamed NDJSON reply: `work` sends lines until it returns; a failure becomes an error line. */
export function ndjsonResponse<L extends { type: string }>(
  signal: AbortSignal,
  work: (send: (line: L) => void) => Promise<void>,
): Response {
  const encoder = new TextEncoder();
  let quietSince = Date.now();
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      const write = (line: L | ErrorLine | { type: "heartbeat" }) => {
        quietSince = Date.now();
        try {
          controller.enqueue(encoder.encode(`${JSON.stringify(line)}\n`));
        } catch {
          // The client is gone (the stream was cancelled); its request signal stops the work.
        }
      };
      heartbeat = setInterval(() => {
        if (Date.now() - quietSince >= CONTROL_HEARTBEAT_MS) write({ type: "heartbeat" });
      }, CONTROL_HEARTBEAT_MS);
      try {
        await work(write);
      } catch (err) {
        if (!signal.aborted) write(errorLine(err));
      } finally {
        clearInterval(heartbeat);
      }
      try {
        controller.close();
      } catch {
        // already cancelled by the client
      }
    },
    cancel() {
      clearInterval(heartbeat);
    },
  });
  return new Response(stream, { headers: { "content-type": "application/x-ndjson" } });
}

/** The lines of an NDJSON body, refusing one longer than `maxChars` with `tooLong`'s error. */
export async function* ndjsonLines(
  body: AsyncIterable<Uint8Array>,
  maxChars: number,
  tooLong: () => Error = () => new InvalidInputError(`a line is over ${maxChars} characters`),
): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const chunk of body) {
    buffered += decoder.decode(chunk, { stream: true });
    let newline = buffered.indexOf("\n");
    while (newline >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      newline = buffered.indexOf("\n");
    }
    if (buffered.length > maxChars) throw tooLong();
  }
  buffered += decoder.decode();
  if (buffered.trim() !== "") yield buffered;
}
