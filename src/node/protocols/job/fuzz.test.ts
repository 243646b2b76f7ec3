import { afterAll, beforeAll, expect, test } from "bun:test";
import { decode, encode, WIRE_VERSION, wireStream } from "../../wire.ts";
import { fuzzRandom } from "../fuzz-random.ts";
import { eventually } from "../infer/test-engines.ts";
import { connect, framed, type TestHost, testHost, varint } from "../infer/test-hosts.ts";
import { JOB_PROTOCOL, type JobService, jobProtocol } from "./index.ts";
import { MAX_REQUEST_FRAME_BYTES, MAX_SHARD_FRAME_BYTES } from "./messages.ts";
import { FakeAggregator } from "./test-aggregator.ts";

/**
 * Fuzz loop: hostile frames sent raw to a real aggregator's /infernet/job/1.0.0 handler over QUIC:
 * garbage, truncated, oversized, wrong-version and wrong-type frames, bad CBOR, bad headers, and
 * uploads that go wrong (shards that do not fit the plan or do not parse, too many shards, too few,
 * frames after `end`). The aggregator must answer each with an error frame or a closed stream, hand
 * the api no shard after the bad frame, store no job, keep answering valid calls exactly, and close
 * every stream.
 */
const CASES = 300;
/** Longest wait for the aggregator's answer to one case. */
const REPLY_TIMEOUT_MS = 3_000;

let fake: FakeAggregator;
let aggregator: TestHost;
let client: TestHost;

beforeAll(async () => {
  fake = new FakeAggregator();
  aggregator = await testHost({ job: jobProtocol({ aggregator: () => fake }) });
  client = await testHost({ job: jobProtocol() });
  await connect(client, aggregator);
});

afterAll(async () => {
  await Promise.all([client?.stop(), aggregator?.stop()]);
});

// Seeded, so a failing case can be replayed.
const { int, pick, bytes } = fuzzRandom(20261127);

let keys = 0;
const PLAN = { records: 5, shardSize: 2, shardCount: 3 };
const submit = () => ({
  v: WIRE_VERSION,
  type: "submit",
  spec: {
    model: { name: "m", sha256: "d".repeat(64) },
    input: { kind: "prompts", path: "in.jsonl" },
    redundancy: 1,
    maxPriceMsat: 100,
    deadlineMs: 4_000_000_000_000,
    idempotencyKey: `fuzz-${++keys}`,
  },
  plan: PLAN,
  kind: "prompts",
});
const shard = (index: number, patch: Record<string, unknown> = {}) => {
  const start = index * 2;
  const count = Math.min(2, 5 - start);
  const prompts = Array.from({ length: count }, (_, i) => ({ prompt: `p${start + i}` }));
  return { index, start, count, payload: { kind: "prompts", prompts }, ...patch };
};
const shardFrame = (value: unknown) => framed(encode({ v: WIRE_VERSION, type: "shard", shard: value }));
const END = framed(encode({ v: WIRE_VERSION, type: "end" }));
const join = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

interface Case {
  kind: string;
  bytes: Uint8Array;
  /** Right answers: an error code, or "none" (the stream just ends). */
  codes: string[];
  /** Valid shard frames before the bad one (the api may be handed fewer, never more). */
  valid: number;
}

/** A valid header and `n` valid shards, then `tail`. */
function upload(kind: string, n: number, tail: Uint8Array, codes: string[]): Case {
  const shards = Array.from({ length: n }, (_, i) => shardFrame(shard(i)));
  return { kind, bytes: join(framed(encode(submit())), ...shards, tail), codes, valid: n };
}

function makeCase(): Case {
  const before = int(3);
  switch (int(14)) {
    case 0:
      return { kind: "raw garbage", bytes: bytes(1 + int(600)), codes: ["bad-request", "none"], valid: 0 };
    case 1:
      return { kind: "framed garbage", bytes: framed(bytes(1 + int(600))), codes: ["bad-request"], valid: 0 };
    case 2: {
      const value = pick<unknown>([42, "submit", [1, 2], true, null, new Uint8Array(5), -7.5, [submit()]]);
      return { kind: "not a map", bytes: framed(encode(value)), codes: ["bad-request"], valid: 0 };
    }
    case 3: {
      const v = pick<unknown>([0, 2, 255, "1", -1, 1.5, null]);
      return {
        kind: "wrong version",
        bytes: framed(encode({ ...submit(), v })),
        codes: ["unsupported-version"],
        valid: 0,
      };
    }
    case 4: {
      const type = pick(["shard", "end", "ack", "accepted", "", "SUBMIT", "error"]);
      return { kind: "wrong type", bytes: framed(encode({ ...submit(), type })), codes: ["bad-request"], valid: 0 };
    }
    case 5: {
      const length = pick([MAX_SHARD_FRAME_BYTES + 1 + int(2 ** 40), MAX_REQUEST_FRAME_BYTES + 1 + int(1000)]);
      const tail = length < MAX_SHARD_FRAME_BYTES ? bytes(length) : bytes(int(64));
      return { kind: "oversized request", bytes: join(varint(length), tail), codes: ["bad-request"], valid: 0 };
    }
    case 6: {
      let nested: unknown = "deep";
      for (let i = 0; i < 2_000 + int(20_000); i++) nested = [nested];
      return {
        kind: "deeply nested",
        bytes: framed(encode({ ...submit(), spec: nested })),
        codes: ["bad-request", "invalid-input"],
        valid: 0,
      };
    }
    case 7: {
      const bad = pick<Record<string, unknown>>([
        { plan: { ...PLAN, shardCount: 4 } },
        { plan: { ...PLAN, records: 0 } },
        { plan: { ...PLAN, extra: 1 } },
        { kind: "audio" },
        { spec: { ...submit().spec, redundancy: 99 } },
        { spec: { ...submit().spec, idempotencyKey: "" } },
        { spec: null },
      ]);
      const codes = "spec" in bad ? ["invalid-input"] : ["bad-request"];
      return { kind: "bad header", bytes: framed(encode({ ...submit(), ...bad })), codes, valid: 0 };
    }
    case 8: {
      const whole = framed(encode(submit()));
      return {
        kind: "truncated",
        bytes: whole.subarray(0, 1 + int(whole.length - 1)),
        codes: ["bad-request"],
        valid: 0,
      };
    }
    case 9: {
      const misfit = pick<Record<string, unknown>>([
        { index: before + 1 },
        { start: 99 },
        { start: before * 2 + 1 },
        { payload: { kind: "tensor", tensor: { type: "float32", dims: [2, 1], data: new Uint8Array(8) } } },
      ]);
      return upload("misfit shard", before, shardFrame(shard(before, misfit)), ["invalid-input"]);
    }
    case 10: {
      const broken = pick<unknown>([
        null,
        7,
        { ...shard(before), extra: 1 },
        shard(before, { count: 5 }),
        { index: before },
      ]);
      return upload("unparseable shard", before, shardFrame(broken), ["invalid-input"]);
    }
    case 11: {
      const tail = pick([
        framed(bytes(1 + int(100))),
        framed(encode({ v: WIRE_VERSION, type: "submit" })),
        framed(encode({ v: 2, type: "shard", shard: shard(before) })),
        join(varint(MAX_SHARD_FRAME_BYTES + 1), bytes(8)),
        END,
      ]);
      const codes = tail === END ? ["bad-request"] : ["bad-request", "unsupported-version"];
      return upload("bad frame in an upload", before, tail, codes);
    }
    case 12: {
      const extra = pick([shardFrame(shard(2)), join(END, END), join(END, shardFrame(shard(0)))]);
      return upload("frames past the plan or after end", 3, extra, ["bad-request"]);
    }
    default: {
      const frames = join(framed(encode(submit())), ...[0, 1].map((i) => shardFrame(shard(i))));
      return {
        kind: "upload cut short",
        bytes: frames.subarray(0, frames.length - int(40)),
        codes: ["bad-request"],
        valid: 1,
      };
    }
  }
}

/** Sends one case raw and returns what came back: an error code, "accepted", "none" or "hang". */
async function send(c: Case): Promise<string> {
  const stream = await client.dialProtocol(aggregator.peerId, JOB_PROTOCOL);
  const lp = wireStream(stream, MAX_SHARD_FRAME_BYTES);
  try {
    stream.send(c.bytes);
    await stream.close();
    for (;;) {
      const reply = decode((await lp.read({ signal: AbortSignal.timeout(REPLY_TIMEOUT_MS) })).subarray()) as {
        type: string;
        code?: string;
      };
      if (reply.type === "error") return String(reply.code);
      if (reply.type === "accepted") return "accepted";
    }
  } catch (err) {
    if ((err as Error).name === "TimeoutError" || (err as Error).name === "AbortError") return "hang";
    return "none";
  } finally {
    stream.abort(new Error("case over"));
  }
}

async function runValid(): Promise<void> {
  const jobs = client.services.job as JobService;
  const header = { spec: { ...submit().spec } as never, plan: PLAN, kind: "prompts" as const };
  const shards = [0, 1, 2].map((i) => shard(i)) as never[];
  const result = await jobs.submit(
    aggregator.peerId,
    header,
    (async function* () {
      yield* shards;
    })(),
  );
  expect(result.created).toBe(true);
  expect(fake.jobs.get(result.jobId)?.shards).toEqual(shards);
}

test(`${CASES} hostile inputs: the aggregator answers each, stores nothing, and keeps serving`, async () => {
  await runValid();
  const wrong: string[] = [];
  const tally = new Map<string, number>();
  for (let i = 0; i < CASES; i++) {
    const c = makeCase();
    const stored = fake.jobs.size;
    const uploads = fake.uploads.length;
    const got = await send(c);
    tally.set(`${c.kind}: ${got}`, (tally.get(`${c.kind}: ${got}`) ?? 0) + 1);
    if (!c.codes.includes(got)) wrong.push(`case ${i} (${c.kind}): got ${got}, expected ${c.codes.join(" or ")}`);
    // The api was handed no shard past the last valid one, and stored nothing.
    const handed = fake.uploads.slice(uploads).map((u) => u.length);
    if (handed.some((n) => n > c.valid)) wrong.push(`case ${i} (${c.kind}): the api got ${handed} of ${c.valid} valid`);
    if (fake.jobs.size !== stored) wrong.push(`case ${i} (${c.kind}): a job was stored`);
    if (i % 50 === 49) await runValid();
  }
  expect(wrong).toEqual([]);
  await runValid();
  const open = () =>
    aggregator
      .getConnections()
      .flatMap((c) => c.streams)
      .filter((s) => s.protocol === JOB_PROTOCOL);
  expect(await eventually(() => open().length === 0, 5_000)).toBe(true);
  console.log(`job fuzz: ${[...tally].map(([k, n]) => `${k} x${n}`).join(", ")}`);
}, 180_000);
