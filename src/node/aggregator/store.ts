import { IdempotencyConflictError, JobNotFoundError } from "../../jobs/errors.ts";
import { feeMsat } from "../../jobs/fee.ts";
import type { JobReport } from "../../jobs/job-report.ts";
import { JobStore } from "../../jobs/job-store.ts";
import type { ShardPayload, ShardPlan } from "../../jobs/records.ts";
import { canonicalJson } from "../../jobs/rows.ts";
import { type JobSpec, parseJobSpec, shardRanges } from "../../jobs/spec.ts";
import { type Msat, scale, ZERO_MSAT } from "../../payments/amount.ts";
import { FULL_BPS } from "../../payments/earnings.ts";
import { type ModelPrice, usagePrice } from "../../payments/pricing.ts";
import type { Store } from "../../store/db.ts";
import type { OutputInfo, SubmitResult } from "./api.ts";

/**
 * What an aggregator keeps beyond the job model (`JobStore`): who submitted each job, how its input
 * was cut, every shard's payload, uploads in progress, each copy's price and usage, and the merged
 * output. Everything a restarted aggregator needs to carry on is here, written in transactions.
 */

/** An upload left unfinished this long ago (a client that vanished) is deleted. */
export const STALE_UPLOAD_MS = 60 * 60_000;

/**
 * The spec as an aggregator stores it: the client's idempotency key is scoped to the client (hashed
 * with its peer id), so two clients that derive the same key from the same input never collide,
 * and no client can learn whether another submitted something.
 */
export function scopedSpec(spec: JobSpec, client: string): JobSpec {
  const key = new Bun.CryptoHasher("sha256").update(`${client}\n${spec.idempotencyKey}`).digest("hex");
  return { ...spec, idempotencyKey: key };
}

export interface JobMeta {
  jobId: string;
  client: string;
  kind: ShardPayload["kind"];
  records: number;
  shardSize: number;
  feePercent: number;
}

export interface CopyUsage {
  records: number;
  inputTokens: number;
  outputTokens: number;
  computeMs: number;
}

interface MetaRow {
  job_id: string;
  client_peer: string;
  payload_kind: string;
  records: number;
  shard_size: number;
  fee_percent: number;
}

/** A copy's usage and price, as `costOf` reads them. */
interface CostRow {
  provider: string;
  kind: string;
  records: number;
  input_tokens: number | null;
  output_tokens: number | null;
  compute_ms: number | null;
  price_json: string | null;
  earn_bps: number | null;
}

const COST_QUERY = `SELECT a.provider, m.payload_kind AS kind, s.record_count AS records, a.input_tokens, a.output_tokens,
         a.compute_ms, a.price_json, a.earn_bps
  FROM assignments a JOIN shards s ON s.id = a.shard_id JOIN aggregator_jobs m ON m.job_id = a.job_id`;

/**
 * Prompts are paid by their tokens, tensors and images by their records (inferences); both by compute
 * time; times the copy's earnings multipliers once it was paid (payments/earnings.ts).
 */
function costOf(r: CostRow): Msat {
  if (!r.price_json) return ZERO_MSAT;
  const price = JSON.parse(r.price_json) as ModelPrice;
  const computeMs = r.compute_ms === null ? undefined : Math.ceil(r.compute_ms);
  const full = usagePrice(
    price,
    r.kind === "prompts"
      ? { tokensOut: r.output_tokens ?? 0, tokensIn: r.input_tokens ?? 0, ...(computeMs ? { computeMs } : {}) }
      : { inferences: r.records, ...(computeMs ? { computeMs } : {}) },
  );
  return r.earn_bps === null ? full : scale(full, BigInt(r.earn_bps), BigInt(FULL_BPS), "down");
}

export class AggregatorStore {
  readonly jobs: JobStore;
  private readonly db: Store["db"];

  constructor(
    store: Store,
    private readonly now: () => number = Date.now,
  ) {
    this.db = store.db;
    this.jobs = new JobStore(store, { now });
  }

  /** The job this key names, when it is the same job from the same client; see `AggregatorApi.existing`. */
  existing(specInput: unknown, client: string): SubmitResult | undefined {
    const spec = scopedSpec(parseJobSpec(specInput), client);
    const job = this.jobs.jobByKey(spec.idempotencyKey);
    if (!job) return undefined;
    const meta = this.metaOrUndefined(job.id);
    if (!meta || meta.client !== client || canonicalJson(job.spec) !== canonicalJson(spec)) {
      throw new IdempotencyConflictError(`job key ${spec.idempotencyKey} was already used for another job`, {
        hint: "choose a new idempotency key for a different job",
      });
    }
    return { jobId: job.id, created: false };
  }

  /** Keeps one uploaded shard's payload until the upload is committed or discarded. */
  stageShard(uploadId: string, index: number, payload: Uint8Array): void {
    this.db
      .query("INSERT OR REPLACE INTO job_uploads (upload_id, idx, payload, created_at) VALUES (?, ?, ?, ?)")
      .run(uploadId, index, payload, this.now());
  }

  /**
   * Creates the job from a finished upload in one transaction: the job and its shards (`JobStore`),
   * who submitted it and how it was cut, and every staged payload moved to its shard. A key already
   * used for the same job returns that job and drops the upload.
   */
  commit(
    uploadId: string,
    spec: JobSpec,
    plan: ShardPlan,
    kind: ShardPayload["kind"],
    client: string,
    feePercent: number,
    /** Runs in the job's creating transaction (the escrow lock): a throw creates nothing. */
    onCreate: (jobId: string) => void = () => {},
  ): SubmitResult {
    return this.db
      .transaction((): SubmitResult => {
        const known = this.existing(spec, client);
        if (known) {
          this.discardUpload(uploadId);
          return known;
        }
        const { job } = this.jobs.submit(scopedSpec(spec, client), shardRanges(plan));
        this.db
          .query(
            `INSERT INTO aggregator_jobs (job_id, client_peer, payload_kind, records, shard_size, fee_percent)
             VALUES (?, ?, ?, ?, ?, ?)`,
          )
          .run(job.id, client, kind, plan.records, plan.shardSize, feePercent);
        const moved = this.db
          .query(
            `INSERT INTO shard_inputs (shard_id, payload)
             SELECT s.id, u.payload FROM shards s JOIN job_uploads u ON u.idx = s.idx AND u.upload_id = ?
             WHERE s.job_id = ?`,
          )
          .run(uploadId, job.id);
        if (moved.changes !== plan.shardCount) {
          throw new Error(`upload ${uploadId} holds ${moved.changes} of ${plan.shardCount} shards`);
        }
        this.discardUpload(uploadId);
        onCreate(job.id);
        return { jobId: job.id, created: true };
      })
      .immediate();
  }

  discardUpload(uploadId: string): void {
    this.db.query("DELETE FROM job_uploads WHERE upload_id = ?").run(uploadId);
  }

  /** Drops uploads older than `STALE_UPLOAD_MS` (all of them at start-up: no upload survives a restart). */
  discardStaleUploads(all = false): number {
    const before = all ? Number.MAX_SAFE_INTEGER : this.now() - STALE_UPLOAD_MS;
    return this.db.query("DELETE FROM job_uploads WHERE created_at < ?").run(before).changes;
  }

  meta(jobId: string): JobMeta {
    const meta = this.metaOrUndefined(jobId);
    if (!meta) throw new JobNotFoundError(`no job ${jobId}`);
    return meta;
  }

  /** The job's metadata when `client` submitted it; the same `JobNotFoundError` for unknown and not-yours. */
  owned(jobId: string, client: string): JobMeta {
    const meta = this.metaOrUndefined(jobId);
    if (!meta || meta.client !== client) throw new JobNotFoundError(`no job ${jobId}`);
    return meta;
  }

  /** A shard's payload as sent to providers (CBOR of `shardToWire`). */
  shardInput(shardId: number): Uint8Array {
    const row = this.db
      .query<{ payload: Uint8Array }, [number]>("SELECT payload FROM shard_inputs WHERE shard_id = ?")
      .get(shardId);
    if (!row) throw new JobNotFoundError(`no input for shard ${shardId}`);
    return row.payload;
  }

  /**
   * The provider's price for this copy when it was leased: its announced price for the model, and
   * that as an estimate in msat per main unit (for penalties, which are multiples of it).
   */
  setPrice(assignmentId: string, price: ModelPrice, unitPriceMsat: number): void {
    this.db
      .query("UPDATE assignments SET unit_price_msat = ?, price_json = ? WHERE id = ?")
      .run(unitPriceMsat, JSON.stringify(price), assignmentId);
  }

  /**
   * Records the share of its price a copy earns (payments/earnings.ts), as it is paid; once: a
   * release repeated after a crash keeps the share the ledger paid.
   */
  setEarnings(assignmentId: string, bps: number): void {
    this.db.query("UPDATE assignments SET earn_bps = ? WHERE id = ? AND earn_bps IS NULL").run(bps, assignmentId);
  }

  /** What a copy earns: its usage (payments/pricing.ts) at the price it was leased at; 0 with no price. */
  copyPrice(assignmentId: string): Msat {
    const row = this.db.query<CostRow, [string]>(`${COST_QUERY} WHERE a.id = ?`).get(assignmentId);
    return row ? costOf(row) : ZERO_MSAT;
  }

  /** Stores a returned copy's result and what it cost, in one transaction; see `JobStore.recordResult`. */
  recordCopy(assignmentId: string, bytes: Uint8Array, usage: CopyUsage): { duplicate: boolean } {
    const sha256 = new Bun.CryptoHasher("sha256").update(bytes).digest("hex");
    const record = () => {
      const { duplicate } = this.jobs.recordResult(assignmentId, { sha256, bytes });
      if (!duplicate) {
        this.db
          .query("UPDATE assignments SET compute_ms = ?, input_tokens = ?, output_tokens = ? WHERE id = ?")
          .run(usage.computeMs, usage.inputTokens, usage.outputTokens, assignmentId);
      }
      return { duplicate };
    };
    return this.db.inTransaction ? record() : this.db.transaction(record).immediate();
  }

  /** Work units a copy is paid for: generated tokens for prompts, records for tensors. */
  copyUnits(assignmentId: string, kind: ShardPayload["kind"]): number {
    const row = this.db
      .query<{ output_tokens: number | null; record_count: number }, [string]>(
        `SELECT a.output_tokens, s.record_count FROM assignments a JOIN shards s ON s.id = a.shard_id WHERE a.id = ?`,
      )
      .get(assignmentId);
    if (!row) return 0;
    return kind === "prompts" ? (row.output_tokens ?? 0) : row.record_count;
  }

  /**
   * What a job's verified copies earn, by provider, and the fee on them: each copy its units at its
   * price (payments/escrow.ts `copyPrice`) with the fee rounded up per copy, exactly as the escrow
   * releases them, so a report and the ledger never disagree.
   */
  costs(jobId: string, feePercent: number): { byProvider: Map<string, bigint>; fee: bigint } {
    const rows = this.db
      .query<CostRow, [string]>(`${COST_QUERY} WHERE a.job_id = ? AND a.state = 'verified'`)
      .all(jobId);
    const byProvider = new Map<string, bigint>();
    let fee = 0n;
    for (const r of rows) {
      const price = costOf(r);
      byProvider.set(r.provider, (byProvider.get(r.provider) ?? 0n) + price);
      fee += BigInt(feeMsat(Number(price), feePercent));
    }
    return { byProvider, fee };
  }

  /** The job's report with what it cost: the providers' verified copies at their prices, plus the fee. */
  report(jobId: string): JobReport {
    const meta = this.meta(jobId);
    const { byProvider, fee } = this.costs(jobId, meta.feePercent);
    const providersMsat = [...byProvider.values()].reduce((a, b) => a + b, 0n);
    return {
      ...this.jobs.report(jobId),
      cost: {
        providersMsat: Number(providersMsat),
        feeMsat: Number(fee),
        totalMsat: Number(providersMsat + fee),
        feePercent: meta.feePercent,
        byProvider: Object.fromEntries([...byProvider].map(([p, msat]) => [p, Number(msat)])),
      },
    };
  }

  /** Whether this database holds the job as its aggregator. */
  holds(jobId: string): boolean {
    return this.metaOrUndefined(jobId) !== undefined;
  }

  /** A job's verified copies in shard order (provider, and the result bytes). */
  verifiedCopies(jobId: string): { shard: number; provider: string; bytes: Uint8Array | null }[] {
    return this.db
      .query<{ shard: number; provider: string; bytes: Uint8Array | null }, [string]>(
        `SELECT s.idx AS shard, a.provider, a.result_bytes AS bytes
         FROM assignments a JOIN shards s ON s.id = a.shard_id
         WHERE a.job_id = ? AND a.state = 'verified' ORDER BY s.idx, a.rowid`,
      )
      .all(jobId);
  }

  setOutput(jobId: string, output: OutputInfo): void {
    this.db
      .query(
        `INSERT OR REPLACE INTO job_outputs (job_id, path, bytes, sha256, records, written_at)
         VALUES (?, ?, ?, ?, ?, ?)`,
      )
      .run(jobId, output.path, output.bytes, output.sha256, output.records, this.now());
  }

  output(jobId: string): OutputInfo | undefined {
    const row = this.db
      .query<{ path: string; bytes: number; sha256: string; records: number }, [string]>(
        "SELECT path, bytes, sha256, records FROM job_outputs WHERE job_id = ?",
      )
      .get(jobId);
    return row ?? undefined;
  }

  /** Verified jobs of this aggregator whose output is not written yet (a crash between the two). */
  unmergedJobs(): string[] {
    return this.db
      .query<{ id: string }, []>(
        `SELECT j.id FROM jobs j JOIN aggregator_jobs m ON m.job_id = j.id
         WHERE j.state = 'verified' AND NOT EXISTS (SELECT 1 FROM job_outputs o WHERE o.job_id = j.id)`,
      )
      .all()
      .map((r) => r.id);
  }

  /** One state code per shard, in input order (an index into `SHARD_STATES`). */
  shardStates(jobId: string, codes: Readonly<Record<string, number>>): Uint8Array {
    const rows = this.db
      .query<{ state: string }, [string]>("SELECT state FROM shards WHERE job_id = ? ORDER BY idx")
      .all(jobId);
    return Uint8Array.from(rows, (r) => codes[r.state] ?? 0);
  }

  private metaOrUndefined(jobId: string): JobMeta | undefined {
    const row = this.db
      .query<MetaRow, [string]>(
        "SELECT job_id, client_peer, payload_kind, records, shard_size, fee_percent FROM aggregator_jobs WHERE job_id = ?",
      )
      .get(jobId);
    if (!row) return undefined;
    return {
      jobId: row.job_id,
      client: row.client_peer,
      kind: row.payload_kind as ShardPayload["kind"],
      records: row.records,
      shardSize: row.shard_size,
      feePercent: row.fee_percent,
    };
  }
}
