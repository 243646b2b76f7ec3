import { readFileSync } from "node:fs";

/**
 * A real HTTP file server on 127.0.0.1 (Bun.serve, port 0) with real Range support, for download
 * tests. Its behaviour can be changed between requests to reproduce what goes wrong on the internet:
 * servers that ignore Range, connections that drop mid-body, stalls, error statuses, redirects.
 */
export interface ServedRequest {
  path: string;
  /** The Range header as sent, if any. */
  range: string | undefined;
  status: number;
  /** Byte span the response covered (end exclusive); 0..0 for errors. */
  start: number;
  end: number;
}

export interface RangeServerBehaviour {
  /** Answer Range requests with 206 (default) or ignore them and send the whole file with 200. */
  ranges: boolean;
  /** Drop the connection after this many body bytes, for the next `dropTimes` responses. */
  dropAfter: number;
  dropTimes: number;
  /** Body chunk size and the pause between chunks (slow links). */
  chunkBytes: number;
  chunkDelayMs: number;
  /** At this offset in the file, stop sending without closing (a stalled link), in every response. */
  stallAt: number | undefined;
  /** Status to answer for a path instead of the file (e.g. 500, 404). */
  statusFor: Record<string, number>;
}

export interface RangeServer extends AsyncDisposable {
  url: string;
  requests: ServedRequest[];
  behaviour: RangeServerBehaviour;
  stop(): Promise<void>;
}

const DEFAULT_CHUNK_BYTES = 64 * 1024;

/**
 * Serves `files` (URL path -> path of a file on disk, or bytes) and `redirects` (URL path -> target
 * URL path, answered with 302).
 */
export function rangeServer(
  files: Record<string, string | Uint8Array>,
  redirects: Record<string, string> = {},
): RangeServer {
  const bodies = new Map<string, Uint8Array>();
  for (const [path, src] of Object.entries(files)) bodies.set(path, typeof src === "string" ? readFileSync(src) : src);
  const requests: ServedRequest[] = [];
  const behaviour: RangeServerBehaviour = {
    ranges: true,
    dropAfter: 0,
    dropTimes: 0,
    chunkBytes: DEFAULT_CHUNK_BYTES,
    chunkDelayMs: 0,
    stallAt: undefined,
    statusFor: {},
  };

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    idleTimeout: 0,
    // A body stream erroring on purpose (a dropped connection) is not worth a stack trace in test output.
    error: () => new Response(null, { status: 500 }),
    fetch(req) {
      const path = new URL(req.url).pathname;
      const range = req.headers.get("range") ?? undefined;
      const record = (status: number, start = 0, end = 0) => requests.push({ path, range, status, start, end });
      const target = redirects[path];
      if (target) {
        record(302);
        return new Response(null, { status: 302, headers: { location: target } });
      }
      const forced = behaviour.statusFor[path];
      if (forced) {
        record(forced);
        return new Response(`forced ${forced}`, { status: forced });
      }
      const body = bodies.get(path);
      if (!body) {
        record(404);
        return new Response("not found", { status: 404 });
      }
      const span = behaviour.ranges && range ? parseRange(range, body.length) : undefined;
      if (behaviour.ranges && range && !span) {
        record(416);
        return new Response(null, { status: 416, headers: { "content-range": `bytes */${body.length}` } });
      }
      const [start, end] = span ?? [0, body.length];
      record(span ? 206 : 200, start, end);
      const headers: Record<string, string> = {
        "content-length": String(end - start),
        "accept-ranges": behaviour.ranges ? "bytes" : "none",
        "content-type": "application/octet-stream",
      };
      if (span) headers["content-range"] = `bytes ${start}-${end - 1}/${body.length}`;
      let drop: number | undefined;
      if (behaviour.dropTimes > 0) {
        behaviour.dropTimes -= 1;
        drop = behaviour.dropAfter;
      }
      const slice = body.subarray(start, end);
      const plain = drop === undefined && behaviour.chunkDelayMs === 0 && behaviour.stallAt === undefined;
      // Bun.serve sends a multi-chunk stream with chunked encoding (dropping Content-Length), so only a
      // misbehaving response is streamed; a well-behaved one is sent whole, with its length, like a CDN.
      return new Response(plain ? slice : stream(slice, start, behaviour, drop, req.signal), {
        status: span ? 206 : 200,
        headers,
      });
    },
  });

  const stop = async () => {
    await server.stop(true);
  };
  return { url: `http://127.0.0.1:${server.port}`, requests, behaviour, stop, [Symbol.asyncDispose]: stop };
}

function stream(
  data: Uint8Array,
  offset: number,
  b: RangeServerBehaviour,
  dropAfter: number | undefined,
  signal: AbortSignal,
): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (dropAfter !== undefined && sent >= dropAfter) {
        // No reason given: Bun would print the stack of one; the client sees the connection reset either way.
        controller.error();
        return;
      }
      if (b.stallAt !== undefined && offset + sent >= b.stallAt) {
        // Hold the connection open and silent until the client gives up.
        await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
        controller.close();
        return;
      }
      if (b.chunkDelayMs > 0) await Bun.sleep(b.chunkDelayMs);
      let n = Math.min(b.chunkBytes, data.length - sent);
      if (dropAfter !== undefined) n = Math.min(n, dropAfter - sent);
      if (b.stallAt !== undefined) n = Math.min(n, b.stallAt - offset - sent);
      if (n <= 0 && sent >= data.length) {
        controller.close();
        return;
      }
      controller.enqueue(data.slice(sent, sent + n));
      sent += n;
      if (sent >= data.length) controller.close();
    },
  });
}

/** Parses a single `bytes=` range (a-b, a-, -n) into [start, end) or undefined when unsatisfiable. */
function parseRange(header: string, size: number): [number, number] | undefined {
  const m = header.match(/^bytes=(\d*)-(\d*)$/);
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") {
    const n = Number(m[2]);
    return n > 0 ? [Math.max(0, size - n), size] : undefined;
  }
  const start = Number(m[1]);
  const end = m[2] === "" ? size : Math.min(size, Number(m[2]) + 1);
  return start < size && start < end ? [start, end] : undefined;
}
