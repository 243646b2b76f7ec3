import type { JobState } from "../jobs/states.ts";
import type { WorkView } from "../node/work-log.ts";

export type { WorkView };

/**
 * What the dashboard shows, as plain data: one snapshot the node's control API serves
 * (`GET /v1/dashboard`), polled by the dashboard's client (tui/client.ts). Panels are pure functions
 * of it, so they are tested with snapshots taken from real nodes. Nothing here imports React.
 */

export interface GpuView {
  name: string;
  vramUsedBytes: number | undefined;
  vramTotalBytes: number | undefined;
  /** 0-100, from nvidia-smi when it answers. */
  utilizationPercent: number | undefined;
  temperatureC: number | undefined;
}

export interface HardwareView {
  gpus: GpuView[];
  cpu: { model: string; cores: number; usedPercent: number | undefined };
  memory: { usedBytes: number; totalBytes: number };
  /** The backend the llama engine runs on ("cuda", "vulkan", "metal", "cpu"), once known. */
  engine: string | undefined;
}

export interface PeerView {
  peerId: string;
  models: string[];
  /** Satoshis per 1,000 tokens. */
  price: number | undefined;
  latencyMs: number | undefined;
  completed: number;
  failed: number;
  connected: boolean;
  aggregatorFeePercent: number | undefined;
}

/** A job this node holds as an aggregator, with its shards' progress. */
export interface JobView {
  id: string;
  model: string;
  state: JobState;
  shardCount: number;
  shardsVerified: number;
  retries: number;
  createdAt: number;
  finishedAt: number | undefined;
  error: string | undefined;
}

/** What this node is computing for others right now (provider side). */
export interface ServingView {
  /** False while serving is paused from the dashboard (`p`). */
  accepting: boolean;
  models: { name: string; sha256: string; runtime: string }[];
  /** Requests and shards computing now / waiting. */
  active: number;
  queued: number;
  served: number;
  failed: number;
  /** Tokens (or records) per second over the last minute, when anything ran. */
  ratePerSecond: number | undefined;
  /** Requests and shards computing now, then the latest finished ones, newest first. */
  work: WorkView[];
}

export interface LogLine {
  t: string;
  level: string;
  ns: string;
  msg: string;
}

export interface DashboardSnapshot {
  node: {
    peerId: string;
    version: string;
    modes: ("provider" | "client" | "aggregator")[];
    startedAt: number;
    addresses: string[];
    /** "public" when a peer confirmed an address, "private" when none could, "unknown" before. */
    reachability: "public" | "private" | "unknown";
    connections: number;
  };
  hardware: HardwareView;
  serving: ServingView;
  jobs: JobView[];
  peers: PeerView[];
  /** The node's books (payments/ledger.ts), amounts as decimal strings of msat. */
  earnings: EarningsView;
  /** The newest lines of the node's log, oldest first. */
  log: LogLine[];
  takenAt: number;
}

/** What the earnings panel shows: the node's own books, read from its ledger and channels. */
export interface EarningsView {
  /** Paid to this node for its own work (an aggregator's payouts, direct payments). */
  incomeMsat: string;
  /** As an aggregator: fees earned, escrow locked for running jobs, providers' earnings not paid out yet. */
  feesMsat: string;
  escrowMsat: string;
  owedMsat: string;
  /** Open channels this node pays into, and open channels paying it. */
  paying: number;
  paid: number;
}

/** A catalog model as the model manager (`m`) lists it: what the node could serve, and what it does. */
export interface ModelChoice {
  name: string;
  description: string;
  runtime: "llama" | "onnx";
  /** All of the entry's files together. */
  sizeBytes: number;
  /** Already downloaded and verified in the node's models folder (serving it starts at once). */
  cached: boolean;
  served: boolean;
}

/** Progress of adding a model to the served set: fetching its files, then loading it into its engine. */
export interface ServeProgress {
  /** `wait`: another process downloads the same file; `download`; `verify`: hashing; `load`: into the engine. */
  phase: "wait" | "download" | "verify" | "load";
  /** The catalog file being fetched (absent while loading). */
  file?: string;
  doneBytes: number;
  totalBytes: number;
  /** Bytes per second over the last few seconds (0 until measured). */
  bytesPerSecond: number;
}
