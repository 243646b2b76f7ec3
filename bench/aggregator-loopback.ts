/**
 * Aggregator capacity on loopback: an aggregator and three mnist-8 providers, each its own process on
 * 127.0.0.1, and the 10,000 MNIST test images submitted in tiny shards (1 and 5 images), redundancy 1.
 * Shards/s = shards / (the job's finishedAt - createdAt in its report): from the upload being
 * committed to every shard verified and the output merged, i.e. what the aggregator dispatched,
 * had computed over real streams, stored, verified and merged per second. The upload and the
 * client's node start are outside this window (bench/aggregator-e2e.ts times those).
 * Usage: bun bench/aggregator-loopback.ts [rounds=2]
 */
import { join } from "node:path";
import { mnistNetwork, reportOf, submitArgs } from "./aggregator-e2e.ts";
import { BUN, CLI, MIRROR, machine, median, spawnTimed } from "./lib.ts";

const rounds = Number(process.argv[2] ?? 2);
const ENV = { INFERNET_MODEL_MIRROR: MIRROR, INFERNET_MDNS: "false", INFERNET_LOG: "info" };

console.log(`aggregator capacity on loopback: 3 mnist-8 provider processes, redundancy 1 (${machine()})`);
const { net, aggregator } = await mnistNetwork(3);
try {
  for (const shardSize of [1, 5]) {
    const rates: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const home = net.home(`client-${shardSize}-${round}`);
      const args = submitArgs(aggregator, `loopback-${shardSize}-${round}`, join(home, "out.jsonl"), 1, shardSize);
      const run = await spawnTimed([BUN, CLI, ...args], { ...ENV, INFERNET_HOME: home });
      if (run.code !== 0) throw new Error(`submit exited ${run.code}: ${run.stderr.slice(-2000)}`);
      const { job, retries } = reportOf(run.stdout);
      if (job.state !== "verified" || job.finishedAt === undefined) throw new Error(`job ${job.id} ${job.state}`);
      const rate = (job.shardCount * 1000) / (job.finishedAt - job.createdAt);
      rates.push(rate);
      console.log(
        `  ${job.shardCount} shards of ${shardSize}: ${rate.toFixed(0)} shards/s (${job.finishedAt - job.createdAt} ms, ${retries} retries)`,
      );
    }
    console.log(`shards of ${shardSize} image(s): median ${median(rates).toFixed(0)} shards/s over ${rounds} runs`);
  }
} finally {
  await net[Symbol.asyncDispose]();
}
