import type { DashboardSnapshot, LogLine, PeerView } from "./state.ts";

/**
 * Dashboard snapshots for the panel tests, with the figures of real machines: the provider's GPU is
 * the H100 captured in ../shared/data/gpu/h100/nvidia-smi-query.csv (81,559 MiB, 33 °C, idle), its
 * host the 16-core EPYC with 128 GiB it sits in; peer ids are real Ed25519 peer ids; model names and
 * sha256s are the catalog's (models/catalog.json).
 */

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

/** 2026-11-26T02:21:42Z, when the nvidia-smi capture was taken. */
export const TAKEN_AT = Date.parse("2026-11-26T02:21:42.000Z");

export const PROVIDER_ID = "12D3KooWDEcWv1As2vrcGfcD3t5ivuNHES3BmPSLZzBTUUknrmdm";
export const PEER_IDS = [
  "12D3KooWPuGz5Boyt8Gtfmj6TPXj1niopVQwiJGzq1E3FZbmtewi",
  "12D3KooWJrMoEwWn4gon86XQ2THcx63D5vN7VjKXCoDRQhmYwewJ",
  "12D3KooWQEpEnPvbwJA5x6fSDZV8GQKma2srMLyqZ14c7Fs3cr5d",
  "12D3KooWE79VwrPheCw7iYn532pMX84KMKS1khLBb26xLDskUpb6",
] as const;

const STORIES = { name: "stories260k", sha256: "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d" };
const MNIST = { name: "mnist-8", sha256: "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf" };

export const PEERS: PeerView[] = [
  {
    peerId: PEER_IDS[0],
    models: ["stories260k", "mnist-8"],
    price: 20,
    latencyMs: 3,
    completed: 48,
    failed: 2,
    connected: true,
    aggregatorFeePercent: undefined,
  },
  {
    peerId: PEER_IDS[1],
    models: ["mnist-8"],
    price: 15,
    latencyMs: 41,
    completed: 12,
    failed: 0,
    connected: true,
    aggregatorFeePercent: 1,
  },
  {
    peerId: PEER_IDS[2],
    models: ["llama3.2-1b", "qwen2.5-0.5b"],
    price: 120,
    latencyMs: 87,
    completed: 0,
    failed: 0,
    connected: true,
    aggregatorFeePercent: undefined,
  },
  {
    peerId: PEER_IDS[3],
    models: ["stories260k"],
    price: 25,
    latencyMs: undefined,
    completed: 3,
    failed: 5,
    connected: false,
    aggregatorFeePercent: undefined,
  },
];

function line(secondsBefore: number, level: string, ns: string, msg: string): LogLine {
  return { t: new Date(TAKEN_AT - secondsBefore * 1000).toISOString(), level, ns, msg };
}

export const LOG: LogLine[] = [
  line(3600, "info", "node", "node started"),
  line(3599, "info", "node", "measuring this machine for its announcements"),
  line(3590, "warn", "node", "bootstrap peer unreachable"),
  line(120, "info", "jobs", "job submitted"),
  line(95, "warn", "client", "provider failed; trying another"),
  line(60, "info", "jobs", "leases expired"),
  line(30, "info", "jobs", "job verified"),
  line(2, "info", "jobs", "job submitted"),
];

/** A provider and aggregator with one H100, serving two models, one job running and one verified. */
export const PROVIDER_SNAPSHOT: DashboardSnapshot = {
  node: {
    peerId: PROVIDER_ID,
    version: "0.1.0",
    modes: ["provider", "aggregator"],
    startedAt: TAKEN_AT - 3_723_000,
    addresses: [
      `/ip4/10.0.0.6/udp/7707/quic-v1/p2p/${PROVIDER_ID}`,
      `/ip4/10.0.0.6/tcp/7707/p2p/${PROVIDER_ID}`,
      `/ip4/127.0.0.1/udp/7707/quic-v1/p2p/${PROVIDER_ID}`,
    ],
    reachability: "public",
    connections: 3,
  },
  hardware: {
    gpus: [
      {
        name: "NVIDIA H100 80GB HBM3",
        vramUsedBytes: 0,
        vramTotalBytes: 81_559 * MIB,
        utilizationPercent: 0,
        temperatureC: 33,
      },
    ],
    cpu: { model: "AMD EPYC", cores: 16, usedPercent: 12 },
    memory: { usedBytes: 9.5 * GIB, totalBytes: 128 * GIB },
    engine: "llama.cpp cuda + onnxruntime cpu",
  },
  serving: {
    accepting: true,
    models: [
      { ...STORIES, runtime: "llama" },
      { ...MNIST, runtime: "onnx" },
    ],
    active: 1,
    queued: 2,
    served: 314,
    failed: 1,
    ratePerSecond: 412.5,
    work: [
      {
        id: 318,
        kind: "shard",
        model: "mnist-8",
        peer: PEER_IDS[1],
        unit: "records",
        done: 300,
        total: 1_000,
        startedAt: TAKEN_AT - 2_000,
        endedAt: undefined,
        outcome: "running",
        error: undefined,
      },
      {
        id: 317,
        kind: "request",
        model: "stories260k",
        peer: PEER_IDS[0],
        unit: "tokens",
        done: 200,
        total: 200,
        startedAt: TAKEN_AT - 9_000,
        endedAt: TAKEN_AT - 8_500,
        outcome: "done",
        error: undefined,
      },
      {
        id: 316,
        kind: "shard",
        model: "mnist-8",
        peer: PEER_IDS[1],
        unit: "records",
        done: 0,
        total: 1_000,
        startedAt: TAKEN_AT - 20_000,
        endedAt: TAKEN_AT - 15_000,
        outcome: "failed",
        error: "the deadline of 5000 ms passed",
      },
    ],
  },
  jobs: [
    {
      id: "9f1c2ab4e07d4c1e9a51b0c3d2e4f601",
      model: "mnist-8",
      state: "running",
      shardCount: 16,
      shardsVerified: 10,
      retries: 2,
      createdAt: TAKEN_AT - 125_000,
      finishedAt: undefined,
      error: undefined,
    },
    {
      id: "3b7e90c1a2d54f6e8b1c0d9e7f6a5b40",
      model: "mnist-8",
      state: "verified",
      shardCount: 8,
      shardsVerified: 8,
      retries: 0,
      createdAt: TAKEN_AT - 900_000,
      finishedAt: TAKEN_AT - 897_000,
      error: undefined,
    },
  ],
  peers: PEERS,
  earnings: {
    incomeMsat: "1234500",
    feesMsat: "0",
    escrowMsat: "0",
    owedMsat: "0",
    paying: 0,
    paid: 1,
  },
  log: LOG,
  takenAt: TAKEN_AT,
};

/** A client node just started: no GPU, nothing served, no peers, no jobs, nothing logged. */
export const EMPTY_SNAPSHOT: DashboardSnapshot = {
  node: {
    peerId: PEER_IDS[1],
    version: "0.1.0",
    modes: ["client"],
    startedAt: TAKEN_AT - 4_000,
    addresses: [],
    reachability: "unknown",
    connections: 0,
  },
  hardware: {
    gpus: [],
    cpu: { model: "AMD EPYC", cores: 2, usedPercent: undefined },
    memory: { usedBytes: 0.5 * GIB, totalBytes: 23.5 * GIB },
    engine: undefined,
  },
  serving: {
    accepting: true,
    models: [],
    active: 0,
    queued: 0,
    served: 0,
    failed: 0,
    ratePerSecond: undefined,
    work: [],
  },
  jobs: [],
  peers: [],
  earnings: { incomeMsat: "0", feesMsat: "0", escrowMsat: "0", owedMsat: "0", paying: 0, paid: 0 },
  log: [],
  takenAt: TAKEN_AT,
};

/** `count` log lines, numbered, for scrolling tests. */
export function longLog(count: number): LogLine[] {
  return Array.from({ length: count }, (_, i) => line(count - i, "info", "node", `line ${i + 1}`));
}
