import { JobReader } from "../../jobs/job-reader.ts";
import type { JobState } from "../../jobs/states.ts";
import { Ledger } from "../../payments/ledger.ts";
import { detectCpu } from "../../runtime/hardware/cpu.ts";
import { LiveSampler } from "../../runtime/hardware/live.ts";
import type { Store } from "../../store/db.ts";
import type { DashboardSnapshot, EarningsView, HardwareView, JobView, PeerView, ServingView } from "../../tui/state.ts";
import { errorMessage } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import { VERSION } from "../../version.ts";
import type { InfernetNode } from "../node.ts";
import { unitPriceMsat } from "../protocols/capability/messages.ts";
import type { ReachabilityService } from "../reachability.ts";
import { mergeWork } from "../work-log.ts";
import { LogTail, logPath } from "./dash-log.ts";
import { MAX_DASH_JOBS, MAX_DASH_PEERS, MAX_DASH_WORK } from "./dash-protocol.ts";

/**
 * Builds the dashboard's snapshot from a running node without touching the network: peers with the
 * latency already known (no pings), jobs from one indexed query, hardware from the live sampler
 * (nvidia-smi at most every few seconds), the log from a bounded tail. Polled every second.
 */
const log = logger("node:control:dash");

interface JobRow {
  id: string;
  model: string;
  state: JobState;
  shard_count: number;
  shards_verified: number;
  retries: number;
  created_at: number;
  finished_at: number | null;
  error: string | null;
}

/** The newest jobs this node holds as an aggregator (`aggregator_jobs` marks them). */
class RecentJobs extends JobReader {
  recent(limit: number): JobView[] {
    return this.db
      .query<JobRow, [number]>(
        `SELECT j.id, j.model, j.state, j.shard_count, j.shards_verified, j.created_at, j.finished_at, j.error,
                (SELECT coalesce(sum(s.retries), 0) FROM shards s WHERE s.job_id = j.id) AS retries
           FROM jobs j JOIN aggregator_jobs a ON a.job_id = j.id
          ORDER BY j.created_at DESC, j.rowid DESC LIMIT ?`,
      )
      .all(limit)
      .map((r) => ({
        id: r.id,
        model: r.model,
        state: r.state,
        shardCount: r.shard_count,
        shardsVerified: r.shards_verified,
        retries: r.retries,
        createdAt: r.created_at,
        finishedAt: r.finished_at ?? undefined,
        error: r.error ?? undefined,
      }));
  }
}

export class DashboardSource {
  private readonly sampler = new LiveSampler();
  private readonly cpu = detectCpu();
  private readonly logTail: LogTail;
  private readonly jobs: RecentJobs;
  private engine: string | undefined;
  private askedEngine = false;

  constructor(
    private readonly node: InfernetNode,
    home: string,
    store: Store = node.store,
  ) {
    this.logTail = new LogTail(logPath(home));
    this.jobs = new RecentJobs(store);
  }

  async snapshot(signal?: AbortSignal): Promise<DashboardSnapshot> {
    const { node } = this;
    const status = node.status();
    return {
      node: {
        peerId: node.peerId,
        version: VERSION,
        modes: modes(node),
        startedAt: status.startedAt,
        addresses: status.addresses,
        reachability: (node.host.services.reachability as ReachabilityService | undefined)?.state() ?? "unknown",
        connections: status.connections,
      },
      hardware: await this.hardware(signal),
      serving: this.serving(),
      jobs: node.aggregator ? this.jobs.recent(MAX_DASH_JOBS) : [],
      peers: this.peers(),
      earnings: this.earnings(),
      log: this.logTail.read(),
      takenAt: Date.now(),
    };
  }

  /** The node's books: a few indexed reads of its ledger and channels per snapshot. */
  private earnings(): EarningsView {
    const ledger = new Ledger(this.node.store);
    const open = this.node.channels.list().filter((c) => c.status === "open");
    return {
      incomeMsat: ledger.total("income").toString(),
      feesMsat: ledger.total("fees").toString(),
      escrowMsat: ledger.total("escrow").toString(),
      owedMsat: ledger.total("earnings").toString(),
      paying: open.filter((c) => c.role === "payer").length,
      paid: open.filter((c) => c.role === "payee").length,
    };
  }

  private async hardware(signal?: AbortSignal): Promise<HardwareView> {
    const live = await this.sampler.sample(signal);
    return {
      gpus: live.gpus.map((g) => ({
        name: g.name,
        vramUsedBytes: g.memoryUsedBytes,
        vramTotalBytes: g.memoryTotalBytes,
        utilizationPercent: g.utilizationPercent,
        temperatureC: g.temperatureC,
      })),
      cpu: { model: this.cpu.model, cores: this.cpu.logicalCores, usedPercent: live.cpuUsedPercent },
      memory: live.memory,
      engine: this.engineBackend(),
    };
  }

  /**
   * What runs the served models: "llama.cpp cuda", "onnxruntime cpu" (the ONNX engine uses
   * onnxruntime's CPU provider), both joined. The llama backend is asked once and only when a llama
   * model is served (it is loaded by then): asking otherwise would load the native library just to
   * draw a label.
   */
  private engineBackend(): string | undefined {
    const runtimes = new Set(this.node.serving.map((m) => m.runtime));
    const parts = [
      ...(runtimes.has("llama") ? [`llama.cpp ${this.llamaBackend() ?? "(loading)"}`] : []),
      ...(runtimes.has("onnx") ? ["onnxruntime cpu"] : []),
    ];
    return parts.length ? parts.join(" + ") : undefined;
  }

  private llamaBackend(): string | undefined {
    const llama = this.node.engines?.llama;
    if (!this.askedEngine && llama && "backend" in llama) {
      this.askedEngine = true;
      (llama as { backend(): Promise<string> })
        .backend()
        .then((b) => {
          this.engine = b;
        })
        .catch((err: unknown) => log.debug("llama backend unknown", { err: errorMessage(err) }));
    }
    return this.engine;
  }

  private serving(): ServingView {
    const { node } = this;
    const infer = node.infer.load();
    const shard = node.host.services.shard.load();
    return {
      accepting: node.accepting,
      models: node.serving.map((m) => ({ name: m.name, sha256: m.sha256 ?? "", runtime: m.runtime })),
      active: infer.active + shard.active,
      queued: infer.queued + shard.queued,
      served: infer.served + shard.served,
      failed: infer.failed + shard.failed,
      ratePerSecond: node.produced.perSecond(),
      work: mergeWork([node.infer.work(MAX_DASH_WORK), node.host.services.shard.work(MAX_DASH_WORK)], MAX_DASH_WORK),
    };
  }

  /** Known peers, connected ones first, with the latency already measured (never a ping from here). */
  private peers(): PeerView[] {
    const { node } = this;
    const records = new Map(node.capability.directory.all().map((r) => [r.peerId, r]));
    const connected = new Set(node.host.getConnections().map((c) => c.remotePeer.toString()));
    const ids = [...new Set([...records.keys(), ...connected])].filter((id) => id !== node.peerId);
    ids.sort((a, b) => Number(connected.has(b)) - Number(connected.has(a)) || (a < b ? -1 : a > b ? 1 : 0));
    return ids.slice(0, MAX_DASH_PEERS).map((id) => {
      const record = records.get(id);
      return {
        peerId: id,
        models: record?.models.map((m) => m.name) ?? [],
        price: record?.models.length
          ? Math.min(...record.models.map((m) => unitPriceMsat(record, m.sha256)))
          : undefined,
        latencyMs: node.knownLatency(id),
        completed: record?.reputation.completed ?? 0,
        failed: record?.reputation.failed ?? 0,
        connected: connected.has(id),
        aggregatorFeePercent: record?.aggregator?.feePercent,
      };
    });
  }
}

function modes(node: InfernetNode): DashboardSnapshot["node"]["modes"] {
  const out: DashboardSnapshot["node"]["modes"] = [];
  if (node.serving.length > 0) out.push("provider");
  if (node.aggregator) out.push("aggregator");
  // As in `infernet status`: a node that neither serves nor aggregates is a client.
  if (out.length === 0) out.push("client");
  return out;
}
