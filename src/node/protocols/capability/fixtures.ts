import type { PrivateKey } from "@libp2p/interface";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { flatPrice } from "../../../payments/pricing.ts";
import type { CapabilityRecord } from "./messages.ts";

/** Test records: a plausible single-GPU provider, valid for a minute from `now`. */

export const STORIES_SHA = "a".repeat(64);
export const MNIST_SHA = "b".repeat(64);

/** stories260k and mnist-8 at `sats` per 1,000 of their main unit (tokens, inferences). */
export function pricedModels(sats: number): CapabilityRecord["models"] {
  return [
    { name: "stories260k", sha256: STORIES_SHA, runtime: "llama", price: flatPrice("llama", sats) },
    { name: "mnist-8", sha256: MNIST_SHA, runtime: "onnx", price: flatPrice("onnx", sats) },
  ];
}

export function sampleRecord(
  key: PrivateKey,
  overrides: Partial<CapabilityRecord> = {},
  now = Date.now(),
): CapabilityRecord {
  const peerId = peerIdFromPrivateKey(key).toString();
  return {
    v: 1,
    peerId,
    addrs: [`/ip4/127.0.0.1/udp/4001/quic-v1/p2p/${peerId}`],
    software: "0.1.0",
    hardware: {
      gpus: [
        {
          name: "NVIDIA H100",
          vramTotal: 80 * 2 ** 30,
          vramFree: 70 * 2 ** 30,
          cudaCores: 16896,
          computeCapability: "9.0",
        },
      ],
      cpu: { model: "AMD EPYC", cores: 16 },
      ramTotal: 128 * 2 ** 30,
      memoryBandwidthGBps: 3350.5,
      tokensPerSecond: 120.25,
    },
    models: pricedModels(20),
    load: { active: 1, queued: 0, maxConcurrent: 4 },
    reputation: { completed: 10, failed: 1 },
    seq: 1,
    issuedAt: now,
    expiresAt: now + 60_000,
    ...overrides,
  };
}
