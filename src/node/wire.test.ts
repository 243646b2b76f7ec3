import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Stream } from "@libp2p/interface";
import { encode as cborEncode } from "cborg";
import { z } from "zod";
import { connect, framed, type TestHost, testHost, varint } from "./protocols/infer/test-hosts.ts";
import {
  decode,
  encode,
  errorFrame,
  MAX_ERROR_MESSAGE_CHARS,
  ProtocolError,
  readMessage,
  WIRE_VERSION,
  wireStream,
  writeMessage,
} from "./wire.ts";

const ECHO = "/infernet/test-wire/1.0.0";
const MAX_FRAME = 1_024;
const Ping = z.object({ v: z.literal(1), type: z.literal("ping"), n: z.number().int().max(100) });

let server: TestHost;
let client: TestHost;
/** What the server's handler saw for each stream: the parsed message or the error's name and code. */
const seen: string[] = [];

beforeAll(async () => {
  server = await testHost();
  client = await testHost();
  // A real handler on a real host: reads one message, answers with the error frame or echoes it.
  await server.handle(ECHO, async (stream: Stream) => {
    const lp = wireStream(stream, MAX_FRAME);
    try {
      const msg = await readMessage(lp, Ping, { signal: AbortSignal.timeout(2_000) });
      seen.push(`ok ${msg.n}`);
      await writeMessage(lp, msg);
    } catch (err) {
      const code = err instanceof ProtocolError ? err.code : "";
      seen.push(`${(err as Error).name} ${code}`);
      await writeMessage(lp, errorFrame(code || "internal", (err as Error).message)).catch(() => {});
    }
    await stream.close().catch(() => {});
  });
  await connect(client, server);
});

afterAll(async () => {
  await client?.stop();
  await server?.stop();
});

/** Sends `bytes` raw on a new stream (closing the write side when `end`), returns the reply frame. */
async function exchange(bytes: Uint8Array, end = true): Promise<unknown> {
  const stream = await client.dialProtocol(server.peerId, ECHO);
  const lp = wireStream(stream, MAX_FRAME);
  stream.send(bytes);
  if (end) await stream.close();
  try {
    return decode((await lp.read({ signal: AbortSignal.timeout(3_000) })).subarray());
  } finally {
    stream.abort(new Error("done"));
  }
}

describe("CBOR profile", () => {
  test("round-trips maps with strings, numbers, arrays and byte strings", () => {
    const msg = { v: 1, type: "x", s: "héllo", n: -3.5, a: [1, 2, [3]], b: new Uint8Array([0, 255, 7]) };
    expect(decode(encode(msg))).toEqual(msg);
  });

  test("refuses what peers must not send, as ProtocolError malformed", () => {
    const bad: [string, Uint8Array][] = [
      ["indefinite array", new Uint8Array([0x9f, 0x01, 0xff])],
      ["undefined", new Uint8Array([0xf7])],
      ["NaN", new Uint8Array([0xf9, 0x7e, 0x00])],
      ["infinity", new Uint8Array([0xf9, 0x7c, 0x00])],
      ["integer over 2^53", new Uint8Array([0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
      ["tag", new Uint8Array([0xc1, 0x01])],
      ["non-minimal integer", new Uint8Array([0x18, 0x01])],
      ["duplicate key", new Uint8Array([0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02])],
      ["trailing bytes", new Uint8Array([0x01, 0x02])],
      ["truncated string", new Uint8Array([0x65, 0x61])],
      ["empty", new Uint8Array([])],
      ["200,000 nested arrays", new Uint8Array(200_000).fill(0x81)],
    ];
    for (const [what, bytes] of bad) {
      let error: unknown;
      try {
        decode(bytes);
      } catch (err) {
        error = err;
      }
      expect({ what, name: (error as Error)?.name, code: (error as ProtocolError)?.code }).toEqual({
        what,
        name: "ProtocolError",
        code: "malformed",
      });
    }
  });

  test("error frames are cut to their limits", () => {
    const frame = errorFrame("x".repeat(500), "y".repeat(50_000));
    expect(frame.code.length).toBe(64);
    expect(frame.message.length).toBe(MAX_ERROR_MESSAGE_CHARS);
    expect(frame.v).toBe(WIRE_VERSION);
  });
});

describe("readMessage over a real QUIC stream", () => {
  test("a valid message is parsed and echoed", async () => {
    expect(await exchange(framed(encode({ v: 1, type: "ping", n: 7, extra: "ignored" })))).toEqual({
      v: 1,
      type: "ping",
      n: 7,
    });
  });

  test("another version is refused with unsupported-version before its schema is looked at", async () => {
    const reply = (await exchange(framed(encode({ v: 2, type: "whatever-v2-has" })))) as Record<string, unknown>;
    expect(reply.code).toBe("unsupported-version");
    expect(reply.message).toMatch(/version 1/);
  });

  test("non-maps, schema violations and non-CBOR are malformed", async () => {
    for (const payload of [
      encode([1, 2, 3]),
      encode("ping"),
      encode({ v: 1, type: "ping", n: 1000 }),
      encode({ v: 1, type: "ping" }),
      new Uint8Array([0xff, 0xfe]),
    ]) {
      expect(((await exchange(framed(payload))) as { code: string }).code).toBe("malformed");
    }
  });

  test("a frame over the limit is refused from its length prefix alone", async () => {
    // Only the prefix is sent: the reader must not wait for (or buffer) the announced megabyte.
    expect(((await exchange(varint(1_000_000), false)) as { code: string }).code).toBe("too-large");
    expect(((await exchange(varint(2 ** 50), false)) as { code: string }).code).toBe("too-large");
  });

  test("a stream that ends mid-frame or before any frame is 'ended'", async () => {
    const whole = framed(encode({ v: 1, type: "ping", n: 1 }));
    expect(((await exchange(whole.subarray(0, whole.length - 2))) as { code: string }).code).toBe("ended");
    expect(((await exchange(new Uint8Array([]))) as { code: string }).code).toBe("ended");
  });

  test("an abort or deadline while waiting gives the typed error, not a protocol error", async () => {
    const stream = await client.dialProtocol(server.peerId, ECHO);
    const lp = wireStream(stream, MAX_FRAME);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    // Nothing was sent, so the server is still waiting too: our read can only end by the signal.
    const aborted = await readMessage(lp, Ping, { signal: controller.signal }).catch((e: Error) => e);
    expect((aborted as Error).name).toBe("AbortedError");
    const late = await readMessage(lp, Ping, { signal: AbortSignal.timeout(20) }).catch((e: Error) => e);
    expect((late as Error).name).toBe("TimeoutError");
    stream.abort(new Error("done"));
  });

  test("a raw CBOR encoder's output is read the same as ours (no private framing)", async () => {
    expect(await exchange(framed(cborEncode({ type: "ping", n: 3, v: 1 })))).toEqual({ v: 1, type: "ping", n: 3 });
  });
});

describe("FrameStream", () => {
  /** A real stream whose far end writes `chunks` as separate sends, then closes. */
  async function framesFrom(chunks: Uint8Array[], maxFrame = MAX_FRAME): Promise<(Uint8Array | string)[]> {
    const RAW = "/infernet/test-raw/1.0.0";
    await server.handle(
      RAW,
      async (stream: Stream) => {
        for (const c of chunks) {
          stream.send(c);
          await Bun.sleep(2);
        }
        await stream.close();
      },
      { force: true },
    );
    const stream = await client.dialProtocol(server.peerId, RAW);
    const frames = wireStream(stream, maxFrame);
    const out: (Uint8Array | string)[] = [];
    for (;;) {
      try {
        out.push(await frames.read({ signal: AbortSignal.timeout(2_000) }));
      } catch (err) {
        out.push((err as ProtocolError).code ?? (err as Error).name);
        break;
      }
    }
    stream.abort(new Error("done"));
    return out;
  }

  test("frames split across chunks and many frames in one chunk come out whole and in order", async () => {
    const a = new Uint8Array(300).fill(1);
    const b = new Uint8Array([2, 2]);
    const c = new Uint8Array(0);
    const all = new Uint8Array([...framed(a), ...framed(b), ...framed(c), ...framed(b)]);
    // 300 needs a two-byte prefix; cut inside the prefix, inside the data and between frames.
    const got = await framesFrom([all.subarray(0, 1), all.subarray(1, 100), all.subarray(100, 303), all.subarray(303)]);
    expect(got).toEqual([a, b, c, b, "ended"]);
  });

  test("a prefix over the limit fails at once; an endless prefix is malformed; unread frames are bounded", async () => {
    expect(await framesFrom([varint(MAX_FRAME + 1)])).toEqual(["too-large"]);
    expect(await framesFrom([new Uint8Array(11).fill(0x80)])).toEqual(["malformed"]);
    // Ten 200-byte frames in one chunk: more than MAX_FRAME (1 KiB) waiting unread.
    const many = new Uint8Array(Array.from({ length: 10 }, () => [...framed(new Uint8Array(200))]).flat());
    expect((await framesFrom([many])).at(-1)).toBe("too-large");
  });

  test("a stream that ends inside a frame says so", async () => {
    const whole = framed(new Uint8Array(50));
    expect(await framesFrom([whole.subarray(0, 20)])).toEqual(["ended"]);
  });
});
