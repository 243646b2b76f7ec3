/**
 * Aggregator capacity: a job of N one-record shards through the whole aggregator (upload staging and
 * commit, planner ticks, leases, settlement, merge) with three providers that answer at once, in one
 * process. It measures what the aggregator itself can dispatch and merge, not the network or a model:
 * shards/s from the end of the upload to the merged output, redundancy 1 and 2.
 * Usage: bun bench/aggregator.ts [shards=5000]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Shard } from "../src/jobs/records.ts";
import { provider } from "../src/jobs/scheduler-fixtures.ts";
import { Aggregator } from "../src/node/aggregator/aggregator.ts";
import { type AggregatorNetwork, shardsInTurn } from "../src/node/aggregator/network.ts";
import type { RunShardOptions, ShardEvent } from "../src/node/protocols/shard/index.ts";
import { Store } from "../src/store/db.ts";
import { machine } from "./lib.ts";

const shards = Number(process.argv[2] ?? 5_000);
const SHA = "cd".repeat(32);
const PEERS = ["peerA", "peerB", "peerC"];

const network: AggregatorNetwork = {
  self: "aggregator",
  findProviders: async () => network.knownProviders(SHA),
  knownProviders: () =>
    PEERS.map((p) => provider(p, { sha256: SHA, tps: 1_000_000, expiresAt: Date.now() + 3_600_000 })),
  runShards: (peer, model, shards, options) => shardsInTurn(network.runShard, peer, model, shards, options),
  async *runShard(peer: string, _model, shard: Shard, options: RunShardOptions): AsyncGenerator<ShardEvent> {
    options.onActivity?.();
    const output = { type: "float32" as const, dims: [1, 10], data: new Float32Array(10).fill(shard.index % 10) };
    yield {
      type: "done",
      result: { kind: "tensor", shard: shard.index, providers: [peer], output },
      usage: { records: 1, inputTokens: 1, outputTokens: 1, computeMs: 0 },
    };
  },
};

async function* tinyShards(n: number): AsyncGenerator<Shard> {
  for (let i = 0; i < n; i++) {
    const tensor = { type: "float32" as const, dims: [1, 4], data: new Float32Array(4) };
    yield { index: i, start: i, count: 1, payload: { kind: "tensor", tensor } };
  }
}

async function run(redundancy: number): Promise<{ uploadMs: number; runMs: number }> {
  const home = mkdtempSync(join(tmpdir(), "infernet-bench-agg-"));
  const store = Store.open(home);
  const agg = new Aggregator({ network, store, home, feePercent: 1 });
  agg.start();
  try {
    const spec = {
      model: { name: "tiny", sha256: SHA },
      input: { kind: "tensor" as const, path: "rows.npy" },
      shardSize: 1,
      redundancy,
      maxPriceMsat: 1_000_000_000,
      deadlineMs: Date.now() + 3_600_000,
      idempotencyKey: `bench-${redundancy}`,
    };
    let t = performance.now();
    const plan = { records: shards, shardSize: 1, shardCount: shards };
    const { jobId } = await agg.submit(
      { spec, plan, kind: "tensor" },
      tinyShards(shards),
      "client",
      new AbortController().signal,
    );
    const uploadMs = performance.now() - t;
    t = performance.now();
    for await (const e of agg.watch(jobId, "client", AbortSignal.timeout(600_000))) {
      if (e.type === "finished") {
        if (e.job.state !== "verified") throw new Error(`job ${e.job.state}: ${e.job.error}`);
        break;
      }
    }
    return { uploadMs, runMs: performance.now() - t };
  } finally {
    await agg.stop();
    store[Symbol.dispose]();
    rmSync(home, { recursive: true, force: true });
  }
}

console.log(`aggregator capacity, ${shards} one-record shards, 3 instant providers (${machine()})`);
for (const redundancy of [1, 2]) {
  const { uploadMs, runMs } = await run(redundancy);
  console.log(
    `redundancy ${redundancy}: upload ${((shards * 1000) / uploadMs).toFixed(0)} shards/s, ` +
      `dispatched, verified and merged ${((shards * 1000) / runMs).toFixed(0)} shards/s ` +
      `(${(shards * redundancy * 1000) / runMs > 0 ? ((shards * redundancy * 1000) / runMs).toFixed(0) : 0} copies/s, ${runMs.toFixed(0)} ms)`,
  );
}
