import type { Statement } from "bun:sqlite";
import type { Store } from "../../store/db.ts";
import { type Msat, msat } from "../amount.ts";
import type { ChannelParams, SignedState } from "./channel.ts";
import { ChannelError, UnknownChannelError } from "./errors.ts";
import { type ChannelNetwork, isChannelNetwork } from "./script.ts";

/**
 * Channels in SQLite (table `channels`, migration 8). Every amount is an INTEGER read back as a
 * bigint (statements use `safeIntegers`) and checked through `msat()`, so no float ever carries one.
 * The payee writes a state before it acknowledges it; the payer writes the update it is about to
 * send as "pending" first and the acknowledged state after, so a crash on either side never loses
 * the last state both have signed. State writes are guarded by the sequence they replace: two
 * writers (or a replay) cannot both advance the same channel.
 */

export type ChannelRole = "payer" | "payee";
export type ChannelStatus = "open" | "closing" | "closed";

export interface ChannelRecord {
  params: ChannelParams;
  role: ChannelRole;
  /** The counterparty's libp2p peer id. */
  peer: string;
  fundingTx: Uint8Array | undefined;
  /** The latest state both sides hold. */
  state: SignedState;
  /** Payer side: the newest update sent and not acknowledged. */
  pending: SignedState | undefined;
  status: ChannelStatus;
  closeTx: Uint8Array | undefined;
  createdAt: number;
  updatedAt: number;
}

/** A row as SQLite returns it with safe integers: every INTEGER is a bigint. */
interface Row {
  id: string;
  role: string;
  peer: string;
  network: string;
  funding_txid: string;
  funding_vout: bigint;
  capacity_sats: bigint;
  fee_sats: bigint;
  payer_key: Uint8Array;
  payee_key: Uint8Array;
  refund_height: bigint;
  funding_tx: Uint8Array | null;
  sequence: bigint;
  paid_msat: bigint;
  commitment_tx: Uint8Array;
  payer_sig: Uint8Array;
  pending_sequence: bigint | null;
  pending_paid_msat: bigint | null;
  pending_tx: Uint8Array | null;
  pending_sig: Uint8Array | null;
  status: string;
  close_tx: Uint8Array | null;
  created_at: bigint;
  updated_at: bigint;
}

type Binding = string | bigint | number | Uint8Array | null;

export class ChannelStore {
  private readonly insertRow: Statement<unknown, Binding[]>;
  private readonly selectOne: Statement<Row, [string]>;
  private readonly selectAll: Statement<Row, []>;
  private readonly advance: Statement<unknown, Binding[]>;
  private readonly pendingRow: Statement<unknown, Binding[]>;
  private readonly statusRow: Statement<unknown, Binding[]>;
  private readonly liveRow: Statement<{ live: number }, []>;

  constructor(private readonly store: Store) {
    const db = store.db;
    this.insertRow = db.query(
      `INSERT INTO channels (id, role, peer, network, funding_txid, funding_vout, capacity_sats, fee_sats,
         payer_key, payee_key, refund_height, funding_tx, status, created_at, updated_at)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'open', ?13, ?13)`,
    );
    this.selectOne = db.query<Row, [string]>("SELECT * FROM channels WHERE id = ?1").safeIntegers(true);
    this.selectAll = db.query<Row, []>("SELECT * FROM channels ORDER BY created_at, id").safeIntegers(true);
    // The new state replaces exactly the one it follows; clears the pending update it settles.
    this.advance = db.query(
      `UPDATE channels SET sequence = ?2, paid_msat = ?3, commitment_tx = ?4, payer_sig = ?5, updated_at = ?6,
         pending_sequence = CASE WHEN pending_sequence <= ?2 THEN NULL ELSE pending_sequence END,
         pending_paid_msat = CASE WHEN pending_sequence <= ?2 THEN NULL ELSE pending_paid_msat END,
         pending_tx = CASE WHEN pending_sequence <= ?2 THEN NULL ELSE pending_tx END,
         pending_sig = CASE WHEN pending_sequence <= ?2 THEN NULL ELSE pending_sig END
       WHERE id = ?1 AND sequence = ?7 AND status = 'open'`,
    );
    this.pendingRow = db.query(
      `UPDATE channels SET pending_sequence = ?2, pending_paid_msat = ?3, pending_tx = ?4, pending_sig = ?5,
         updated_at = ?6 WHERE id = ?1 AND status = 'open'`,
    );
    this.statusRow = db.query("UPDATE channels SET status = ?2, close_tx = ?3, updated_at = ?4 WHERE id = ?1");
    this.liveRow = db.query<{ live: number }, []>(
      "SELECT EXISTS (SELECT 1 FROM channels WHERE status IN ('open', 'closing')) AS live",
    );
  }

  /** Whether any channel is open or closing (one whose timelocks the chain's height decides). */
  hasLive(): boolean {
    return this.liveRow.get()?.live === 1;
  }

  /** A new channel, state 0 (nothing paid). */
  insert(
    channel: { params: ChannelParams; role: ChannelRole; peer: string; fundingTx?: Uint8Array },
    now = Date.now(),
  ) {
    const p = channel.params;
    this.insertRow.run(
      p.id,
      channel.role,
      channel.peer,
      p.network,
      p.fundingTxid,
      p.fundingVout,
      p.capacitySats,
      p.feeSats,
      p.payerKey,
      p.payeeKey,
      p.refundHeight,
      channel.fundingTx ?? null,
      now,
    );
  }

  get(id: string): ChannelRecord | undefined {
    const row = this.selectOne.get(id);
    return row ? fromRow(row) : undefined;
  }

  /** Every channel, oldest first, optionally only those of one role, peer or status. */
  list(filter: { role?: ChannelRole; peer?: string; status?: ChannelStatus } = {}): ChannelRecord[] {
    return this.selectAll
      .all()
      .map(fromRow)
      .filter(
        (c) =>
          (!filter.role || c.role === filter.role) &&
          (!filter.peer || c.peer === filter.peer) &&
          (!filter.status || c.status === filter.status),
      );
  }

  /**
   * Makes `state` the channel's latest, replacing state `previous` (the payee before it
   * acknowledges; the payer when the acknowledgement arrives). Throws when the stored state is not
   * `previous` or the channel is not open: nothing is written then.
   */
  saveState(id: string, previous: number, state: SignedState, now = Date.now()): void {
    const { changes } = this.advance.run(id, state.sequence, state.paidMsat, state.tx, state.signature, now, previous);
    if (changes !== 1) throw this.refusal(id, `state ${state.sequence} does not follow the stored state ${previous}`);
  }

  /** Payer side: the update about to be sent (before it is sent). */
  savePending(id: string, state: SignedState, now = Date.now()): void {
    const { changes } = this.pendingRow.run(id, state.sequence, state.paidMsat, state.tx, state.signature, now);
    if (changes !== 1) throw this.refusal(id, "cannot record an update");
  }

  setStatus(id: string, status: ChannelStatus, closeTx?: Uint8Array, now = Date.now()): void {
    const { changes } = this.statusRow.run(id, status, closeTx ?? null, now);
    if (changes !== 1) throw new UnknownChannelError(`no channel ${id} is stored`);
  }

  /** Several writes as one SQLite transaction. */
  transaction<T>(body: () => T): T {
    return this.store.db.transaction(body).immediate();
  }

  private refusal(id: string, why: string): ChannelError {
    const row = this.selectOne.get(id);
    if (!row) return new UnknownChannelError(`no channel ${id} is stored`);
    return new ChannelError(`channel ${id} (${row.status}, state ${row.sequence}): ${why}`);
  }
}

function fromRow(row: Row): ChannelRecord {
  if (row.role !== "payer" && row.role !== "payee") throw new ChannelError(`channel ${row.id}: bad role ${row.role}`);
  if (!isChannelNetwork(row.network)) throw new ChannelError(`channel ${row.id}: bad network ${row.network}`);
  if (row.status !== "open" && row.status !== "closing" && row.status !== "closed") {
    throw new ChannelError(`channel ${row.id}: bad status ${row.status}`);
  }
  const what = (field: string) => `channel ${row.id} ${field}`;
  const params: ChannelParams = {
    id: row.id,
    network: row.network as ChannelNetwork,
    fundingTxid: row.funding_txid,
    fundingVout: Number(row.funding_vout),
    capacitySats: row.capacity_sats,
    feeSats: row.fee_sats,
    payerKey: bytes(row.payer_key),
    payeeKey: bytes(row.payee_key),
    refundHeight: Number(row.refund_height),
  };
  const pending =
    row.pending_sequence !== null && row.pending_paid_msat !== null && row.pending_tx && row.pending_sig
      ? {
          sequence: Number(row.pending_sequence),
          paidMsat: msat(row.pending_paid_msat, what("pending_paid_msat")),
          tx: bytes(row.pending_tx),
          signature: bytes(row.pending_sig),
        }
      : undefined;
  return {
    params,
    role: row.role,
    peer: row.peer,
    fundingTx: row.funding_tx ? bytes(row.funding_tx) : undefined,
    state: {
      sequence: Number(row.sequence),
      paidMsat: msat(row.paid_msat, what("paid_msat")) as Msat,
      tx: bytes(row.commitment_tx),
      signature: bytes(row.payer_sig),
    },
    pending,
    status: row.status,
    closeTx: row.close_tx ? bytes(row.close_tx) : undefined,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

/** A plain Uint8Array (bun:sqlite returns Buffers for BLOBs, which compare and encode the same). */
function bytes(blob: Uint8Array): Uint8Array {
  return new Uint8Array(blob);
}
