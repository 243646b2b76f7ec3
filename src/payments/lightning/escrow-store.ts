import type { Database } from "bun:sqlite";
import { type Msat, msat } from "../amount.ts";

/**
 * Where the Lightning rail keeps each job's hold: the preimage it made, the hash the invoice locks
 * to, the amount and how far the hold got. Written before LND is asked for anything, so after a crash
 * the aggregator can still settle or cancel every hold it ever created. The preimage stays private
 * until settlement: it is the proof that the client paid. The table, `lightning_escrow`, is made by
 * the node's migrations (store/migrations.ts, version 10); this module never changes a schema.
 */

export type EscrowState = "open" | "settled" | "canceled";

export interface EscrowRecord {
  jobId: string;
  /** Hex, sha256 of the preimage. */
  paymentHash: string;
  /** Hex, 32 random bytes. */
  preimage: string;
  amount: Msat;
  /** The hold invoice, once LND issued it. */
  invoice: string | undefined;
  state: EscrowState;
  /** Milliseconds since the epoch. */
  createdAt: number;
  expiresAt: number;
  settledAt: number | undefined;
}

export interface EscrowStore {
  get(jobId: string): EscrowRecord | undefined;
  /** Adds a new hold; throws if the job already has one. */
  insert(record: EscrowRecord): void;
  update(jobId: string, changes: { invoice?: string; state?: EscrowState; settledAt?: number }): void;
}

interface Row {
  job_id: string;
  payment_hash: string;
  preimage: string;
  amount_msat: bigint;
  invoice: string | null;
  state: EscrowState;
  created_at: bigint;
  expires_at: bigint;
  settled_at: bigint | null;
}

export class SqliteEscrowStore implements EscrowStore {
  constructor(readonly db: Database) {}

  get(jobId: string): EscrowRecord | undefined {
    const row = this.db
      .query<Row, [string]>("SELECT * FROM lightning_escrow WHERE job_id = ?")
      .safeIntegers(true)
      .get(jobId);
    if (!row) return undefined;
    return {
      jobId: row.job_id,
      paymentHash: row.payment_hash,
      preimage: row.preimage,
      amount: msat(row.amount_msat, "escrow amount"),
      invoice: row.invoice ?? undefined,
      state: row.state,
      createdAt: Number(row.created_at),
      expiresAt: Number(row.expires_at),
      settledAt: row.settled_at === null ? undefined : Number(row.settled_at),
    };
  }

  insert(r: EscrowRecord): void {
    this.db
      .query(
        `INSERT INTO lightning_escrow
           (job_id, payment_hash, preimage, amount_msat, invoice, state, created_at, expires_at, settled_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        r.jobId,
        r.paymentHash,
        r.preimage,
        r.amount,
        r.invoice ?? null,
        r.state,
        r.createdAt,
        r.expiresAt,
        r.settledAt ?? null,
      );
  }

  update(jobId: string, changes: { invoice?: string; state?: EscrowState; settledAt?: number }): void {
    this.db
      .query(
        `UPDATE lightning_escrow
            SET invoice = coalesce(?, invoice), state = coalesce(?, state), settled_at = coalesce(?, settled_at)
          WHERE job_id = ?`,
      )
      .run(changes.invoice ?? null, changes.state ?? null, changes.settledAt ?? null, jobId);
  }
}
