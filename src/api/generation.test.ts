import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NetworkEvent } from "../node/client.ts";
import { ApiSpendStore } from "../store/api-spend.ts";
import { Store } from "../store/db.ts";
import { NoProviderError, ProvidersBusyError } from "../util/errors.ts";
import { GatewayAccess } from "./access.ts";
import { type Framing, type Runner, startGenerations, streamBody } from "./generation.ts";
import { createKey } from "./keys.ts";

/**
 * The stream plumbing on its own: a scripted runner stands in for the network (the real one is in
 * test/api.test.ts), the access and spend are real (SQLite in a temporary home).
 */

const model = { id: "m", sha256: "0".repeat(64) };
const framing: Framing = {
  token: (text, index) => [`${index}:${text}|`],
  done: (event, index) => [`${index}:done(${event.usage.outputTokens})|`],
  close: () => ["end"],
  error: (err) => `error:${(err as Error).message}`,
};

/** A runner whose generation `seed` yields `count` tokens, one every `everyMs`, and says when it stopped. */
function scripted(count: number, everyMs: number, log: string[]): Runner {
  return async function* (_model, request, signal): AsyncGenerator<NetworkEvent> {
    const name = `seed${request.kind === "generate" ? (request.seed ?? 0) : 0}`;
    yield { type: "provider", peerId: `p-${name}`, attempt: 1, resumedAt: 0, satsPer1kTokens: 10 };
    try {
      for (let i = 0; i < count; i++) {
        await Bun.sleep(everyMs);
        if (signal.aborted) throw signal.reason;
        yield { type: "token", text: `${name}.${i}`, tokens: [i] };
      }
      yield {
        type: "done",
        finishReason: "length",
        usage: { inputTokens: 1, outputTokens: count, computeMs: 1, firstOutputMs: 1 },
      };
    } finally {
      log.push(`${name} ${signal.aborted ? "aborted" : "ended"}`);
    }
  };
}

/** A run that fails before its first event, as the network's does when no provider can take it. */
function failing(err: Error): AsyncIterable<NetworkEvent> {
  return { [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(err) }) };
}

function setup() {
  const dir = mkdtempSync(join(tmpdir(), "infernet-gen-"));
  const store = Store.open(dir);
  const spend = new ApiSpendStore(store);
  const access = new GatewayAccess({ home: dir, requireKey: false, spend });
  return {
    dir,
    spend,
    access,
    [Symbol.dispose]: () => {
      store.db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test("n choices stream interleaved, each with its own index and seed, and are charged what they generated", async () => {
  using s = setup();
  const { key } = createKey(s.dir, { requestsPerMinute: 100, concurrency: 4 });
  const log: string[] = [];
  const gs = await startGenerations(
    scripted(3, 2, log),
    model,
    { prompt: "x", maxTokens: 3, seed: 5 },
    new AbortController().signal,
    [s.access.admit(key), s.access.admit(key)],
  );
  expect(gs.map((g) => g.headers["x-infernet-provider"])).toEqual(["p-seed5", "p-seed6"]);
  const text = await new Response(streamBody(gs, framing)).text();
  const frames = text.split("|");
  expect(frames.filter((f) => f.startsWith("0:"))).toEqual(["0:seed5.0", "0:seed5.1", "0:seed5.2", "0:done(3)"]);
  expect(frames.filter((f) => f.startsWith("1:"))).toEqual(["1:seed6.0", "1:seed6.1", "1:seed6.2", "1:done(3)"]);
  expect(frames.at(-1)).toBe("end");
  // 3 tokens each at 10 msat.
  expect(s.spend.spent(key.id)).toEqual({ spentMsat: 60, requests: 2 });
  // Both tickets were given back.
  s.access.admit(key)[Symbol.dispose]();
});

test("a reader that stops reading loses the generation after slowReaderMs; the provider run is aborted", async () => {
  using s = setup();
  const log: string[] = [];
  const [g] = await startGenerations(
    scripted(10_000, 1, log),
    model,
    { prompt: "x", maxTokens: 10_000 },
    new AbortController().signal,
    [s.access.admit(undefined)],
  );
  const reader = streamBody([g!], framing, 100).getReader();
  expect(new TextDecoder().decode((await reader.read()).value)).toBe("0:seed0.0|");
  // Then nothing is read.
  await Bun.sleep(400);
  expect(log).toEqual(["seed0 aborted"]);
  await expect(reader.read()).rejects.toThrow(/read nothing for 100 ms/);
});

test("a cancelled response stops every choice on its provider", async () => {
  using s = setup();
  const log: string[] = [];
  const gs = await startGenerations(
    scripted(10_000, 1, log),
    model,
    { prompt: "x", maxTokens: 10_000, seed: 1 },
    new AbortController().signal,
    [s.access.admit(undefined), s.access.admit(undefined)],
  );
  const reader = streamBody(gs, framing).getReader();
  await reader.read();
  await reader.cancel();
  await Bun.sleep(50);
  expect(log.sort()).toEqual(["seed1 aborted", "seed2 aborted"]);
});

test("one choice that cannot start stops the others and gives every ticket back", async () => {
  using s = setup();
  const { key } = createKey(s.dir, { requestsPerMinute: 100, concurrency: 2 });
  const log: string[] = [];
  const good = scripted(10_000, 1, log);
  const runner: Runner = (m, request, signal) => {
    if (request.kind === "generate" && request.seed === 8) throw new Error("no provider");
    return good(m, request, signal);
  };
  const tickets = [s.access.admit(key), s.access.admit(key)];
  await expect(
    startGenerations(runner, model, { prompt: "x", maxTokens: 5, seed: 7 }, new AbortController().signal, tickets),
  ).rejects.toThrow("no provider");
  await Bun.sleep(50);
  expect(log).toEqual(["seed7 aborted"]);
  // Concurrency 2 is free again.
  const again = [s.access.admit(key), s.access.admit(key)];
  for (const t of again) t[Symbol.dispose]();
});

test("while every provider is busy the request waits and tries again; a different failure is not retried", async () => {
  using s = setup();
  const log: string[] = [];
  const good = scripted(2, 1, log);
  let tries = 0;
  const busyTwice: Runner = (m, request, signal) => {
    tries++;
    if (tries <= 2) {
      return failing(new ProvidersBusyError("every provider of m is busy"));
    }
    return good(m, request, signal);
  };
  const [g] = await startGenerations(busyTwice, model, { prompt: "x", maxTokens: 2 }, new AbortController().signal, [
    s.access.admit(undefined),
  ]);
  expect(await new Response(streamBody([g!], framing)).text()).toBe("0:seed0.0|0:seed0.1|0:done(2)|end");
  expect(tries).toBe(3);
  let other = 0;
  const broken: Runner = () => {
    other++;
    return failing(new NoProviderError("no provider on the network serves m"));
  };
  await expect(
    startGenerations(broken, model, { prompt: "x", maxTokens: 2 }, new AbortController().signal, [
      s.access.admit(undefined),
    ]),
  ).rejects.toThrow("no provider");
  expect(other).toBe(1);
});
