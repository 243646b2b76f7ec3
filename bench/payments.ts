/**
 * What taking payment costs an aggregator: the in-process Aggregator over the simulated network
 * (test/helpers/sim-network.ts: four providers run the real mnist-8 on the real onnxruntime), the
 * MNIST 10k job, with escrow on (the quote locked with the job, every verified copy paid in its
 * shard's transaction, the refund on a tick, the books checked at the end) against escrow off, the
 * same job, alternated in one process. Printed: median wall time of each (submit to the merged
 * output; the refund comes on the coordinator's next tick after it, not timed), the difference as % of the job's wall time, and ledger transactions per job.
 * The channel payments themselves (a deposit per job, a payout per provider) are measured by
 * bench/channels.ts; their share is added from its figure (--payment-ms, default the one recorded).
 *
 * Usage: bun bench/payments.ts [--quick] [--payment-ms MS]
 */
import { join } from "node:path";
import type { Shard, ShardPlan } from "../src/jobs/records.ts";
import { splitImages } from "../src/jobs/split.ts";
import { Aggregator } from "../src/node/aggregator/aggregator.ts";
import { msat } from "../src/payments/amount.ts";
import { createOnnxEngine } from "../src/runtime/onnx/engine.ts";
import { Store } from "../src/store/db.ts";
import { MNIST_DIR, tempDir } from "../test/helpers/paths.ts";
import { MNIST_SHA, SimNetwork } from "../test/helpers/sim-network.ts";
import { machine, median } from "./lib.ts";

const QUICK = process.argv.includes("--quick");
const JOBS = QUICK ? 2 : 6;
const SHARD_SIZE = 100;
const CLIENT = "bench-client";
const PROVIDERS = ["p1", "p2", "p3", "p4"];
const QUOTE = 10_000_000;
const paymentMsArg = process.argv.indexOf("--payment-ms");
/** One channel payment's latency over QUIC on loopback (bench/channels.ts, recorded in RESULTS.md). */
const PAYMENT_MS = paymentMsArg > 0 ? Number(process.argv[paymentMsArg + 1]) : 1;

const onnx = createOnnxEngine();
await using splitter = await splitImages(join(MNIST_DIR, "t10k-images-idx3-ubyte.gz"), { shardSize: SHARD_SIZE });
const plan: ShardPlan = splitter.plan;
const shards: Shard[] = [];
for await (const s of splitter.shards()) shards.push(s);

async function* replay(): AsyncGenerator<Shard> {
  yield* shards;
}

async function runJob(escrow: boolean, k: number): Promise<{ ms: number; txns: number }> {
  using dir = tempDir("infernet-bench-pay-");
  using store = Store.open(dir.path);
  const net = new SimNetwork(onnx, PROVIDERS, { price: 20, reference: true });
  const agg = new Aggregator({ network: net, store, home: dir.path, feePercent: 1, escrow });
  agg.payments?.escrow.deposit(CLIENT, msat(QUOTE), "channel", `bench:${k}`);
  agg.start();
  try {
    const started = performance.now();
    const spec = {
      model: { name: "mnist-8", sha256: MNIST_SHA },
      input: { kind: "idx", path: "t10k-images-idx3-ubyte.gz" },
      shardSize: SHARD_SIZE,
      redundancy: 2,
      maxPriceMsat: QUOTE,
      deadlineMs: Date.now() + 600_000,
      idempotencyKey: `bench-${k}-${escrow}`,
    };
    const { jobId } = await agg.submit(
      { spec: spec as never, plan, kind: splitter.kind },
      replay(),
      CLIENT,
      AbortSignal.timeout(600_000),
    );
    for await (const e of agg.watch(jobId, CLIENT, AbortSignal.timeout(600_000))) if (e.type === "finished") break;
    // The client has its output here; the refund follows on the coordinator's next tick (not timed).
    const ms = performance.now() - started;
    while (agg.payments && agg.payments.ledger.total("escrow") > 0n) await Bun.sleep(1);
    agg.payments?.check();
    return { ms, txns: agg.payments?.ledger.txns().length ?? 0 };
  } finally {
    await agg.stop();
  }
}

const on: number[] = [];
const off: number[] = [];
let txns = 0;
await runJob(false, -1); // warm-up: model load, JIT
for (let k = 0; k < JOBS; k++) {
  off.push((await runJob(false, k)).ms);
  const paid = await runJob(true, k);
  on.push(paid.ms);
  txns = paid.txns;
}
const withEscrow = median(on);
const without = median(off);
// A job's channel payments: the client's deposit, and one payout to each provider.
const channelMs = (1 + PROVIDERS.length) * PAYMENT_MS;
console.log(`machine: ${machine()}`);
console.log(
  `MNIST 10k, shards of ${SHARD_SIZE}, redundancy 2, ${PROVIDERS.length} simulated providers, ${JOBS} jobs each`,
);
console.log(`  escrow off: median ${without.toFixed(0)} ms`);
console.log(`  escrow on:  median ${withEscrow.toFixed(0)} ms (${txns} ledger transactions per job)`);
console.log(`  escrow's cost: ${(((withEscrow - without) / without) * 100).toFixed(2)}% of the job's wall time`);
console.log(
  `  with the job's ${1 + PROVIDERS.length} channel payments at ${PAYMENT_MS} ms each: ${(((withEscrow - without + channelMs) / without) * 100).toFixed(2)}%`,
);
await onnx.dispose();
