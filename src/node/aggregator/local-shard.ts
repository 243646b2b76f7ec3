import type { Shard, ShardResult } from "../../jobs/records.ts";
import type { Engine, LocalModel, RuntimeName, Tensor } from "../../runtime/engine.ts";
import { concatBatch } from "../../runtime/onnx/tensors.ts";
import { DEFAULT_BATCH_RECORDS, executeShard } from "../protocols/shard/execute.ts";
import { KEEPALIVE_MS, type RunShardOptions, type ShardEvent } from "../protocols/shard/index.ts";

/**
 * A shard run on the aggregator's own engines, when the aggregator also serves the model: the same
 * execution a provider does for /infernet/shard/1.0.0 (execute.ts), without a stream to itself.
 * It yields the same events as a remote call and reports activity as keepalives would, so the
 * coordinator treats it like any provider.
 */
export async function* runLocalShard(
  self: string,
  model: LocalModel,
  engines: Partial<Record<RuntimeName, Engine>>,
  shard: Shard,
  options: RunShardOptions,
): AsyncGenerator<ShardEvent> {
  const signal = options.signal ?? new AbortController().signal;
  const texts: string[] = [];
  const tensors: Tensor[] = [];
  const alive = setInterval(() => options.onActivity?.(), KEEPALIVE_MS);
  let usage: Awaited<ReturnType<typeof executeShard>>;
  try {
    options.onActivity?.();
    usage = await executeShard(
      model,
      shard,
      async (_first, piece: ShardResult) => {
        options.onActivity?.();
        if (piece.kind === "text") texts.push(...piece.outputs);
        else tensors.push(piece.output);
      },
      { engines, batchRecords: DEFAULT_BATCH_RECORDS, self, signal },
    );
  } finally {
    clearInterval(alive);
  }
  const result: ShardResult =
    shard.payload.kind === "prompts"
      ? { kind: "text", shard: shard.index, providers: [self], outputs: texts }
      : { kind: "tensor", shard: shard.index, providers: [self], output: concatBatch(tensors) };
  yield { type: "done", result, usage };
}
