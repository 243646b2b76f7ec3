import type { CapabilityRecord } from "../node/protocols/capability/messages.ts";
import { flatPrice } from "../payments/pricing.ts";
import type { PlanCopy } from "./feasibility.ts";
import type { PlanJob, PlanShard } from "./scheduler.ts";

/** Test data for the planner: providers as plain records, jobs as snapshots. */

export const MODEL_SHA = "cd".repeat(32);
export const OTHER_SHA = "ef".repeat(32);
export const T0 = 1_000_000;

/** A provider of MODEL_SHA at 10 sats per 1k units, 100 units/s, valid for an hour from T0. */
export function provider(
  peerId: string,
  over: { tps?: number; price?: number; sha256?: string; expiresAt?: number } = {},
): CapabilityRecord {
  return {
    v: 1,
    peerId,
    addrs: [],
    software: "0.1.0",
    hardware: { gpus: [], cpu: { model: "test", cores: 4 }, ramTotal: 2 ** 30, tokensPerSecond: over.tps ?? 100 },
    models: [
      { name: "m", sha256: over.sha256 ?? MODEL_SHA, runtime: "onnx", price: flatPrice("onnx", over.price ?? 10) },
    ],
    load: { active: 0, queued: 0, maxConcurrent: 4 },
    reputation: { completed: 0, failed: 0 },
    seq: 1,
    issuedAt: T0,
    expiresAt: over.expiresAt ?? T0 + 3_600_000,
  };
}

/**
 * A job of `shards` shards of `count` records, one unit each, redundancy 1 by default; generous
 * price and deadline unless overridden.
 */
export function job(
  shards: number,
  over: Partial<Omit<PlanJob, "shards">> & { count?: number; shardOver?: (i: number) => Partial<PlanShard> } = {},
): PlanJob {
  const count = over.count ?? 10;
  const redundancy = over.redundancy ?? 1;
  const list: PlanShard[] = Array.from({ length: shards }, (_, i) => ({
    id: 100 + i,
    index: i,
    count,
    done: false,
    missing: redundancy,
    copies: [],
    ...over.shardOver?.(i),
  }));
  return {
    id: over.id ?? "job-1",
    sha256: over.sha256 ?? MODEL_SHA,
    redundancy,
    maxPriceMsat: over.maxPriceMsat ?? 1_000_000_000,
    deadlineMs: over.deadlineMs ?? T0 + 86_400_000,
    totalTokens: shards * count * (over.tokensPerRecord ?? 1),
    tokensPerRecord: over.tokensPerRecord ?? 1,
    shards: list,
  };
}

export function copy(provider: string, leasedAt: number, over: Partial<PlanCopy> = {}): PlanCopy {
  return { provider, state: "leased", leasedAt, ...over };
}
