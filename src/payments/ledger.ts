import type { Store } from "../store/db.ts";
import { InfernetError, InvalidInputError } from "../util/errors.ts";
import { add, type Msat, msat, ZERO_MSAT } from "./amount.ts";

/**
 * A double-entry ledger in SQLite: every movement of money is one transaction (`post`) of moves from
 * one account to another, with a reason and what it is for (job, shard, copy, penalty, channel
 * state), written in one SQLite transaction or not at all. Each transaction has an idempotency key
 * (`idem`): posting the same key twice is a no-op, so a movement retried after a crash (a shard's
 * release, a job's refund, a channel payment's deposit) can never happen twice.
 *
 * Invariants (`check`, run by the tests after every step): every transaction's entries sum to zero,
 * so the sum of all balances is constant (zero); no account but the `outside` ones (money beyond
 * this node: a channel's far end, a Lightning node, the chain) is ever negative; each balance
 * equals the sum of its entries. SQLite's CHECK constraints hold the same line under the code.
 */

/** Kinds of account; an account id is `kind:owner` (owner a peer id, a job id or a rail name). */
export const ACCOUNT_KINDS = [
  /** Money beyond this node, by rail ("channel", "lightning"): the only accounts that go negative. */
  "outside",
  /** A client's prepaid credit at this aggregator: deposits and refunds, not yet locked. */
  "client",
  /** A job's locked quote: released to providers and the fee as shards verify, the rest refunded. */
  "escrow",
  /** What a provider earned for verified copies and has not been paid out yet. */
  "earnings",
  /** A provider's security deposit, forfeited when it is caught cheating. */
  "bond",
  /** The aggregator's fee income. */
  "fees",
  /** Bonds and earnings forfeited by convicted providers. */
  "forfeits",
  /** What this node was paid by a peer for its own work (an aggregator's payouts, a client's direct jobs). */
  "income",
] as const;
export type AccountKind = (typeof ACCOUNT_KINDS)[number];

/** Why money moved. */
export type Reason = "deposit" | "lock" | "release" | "refund" | "bond" | "forfeit" | "payout" | "withdraw" | "income";

/** Most moves in one transaction (a shard's release pays its copies and the fee). */
export const MAX_MOVES_PER_TXN = 64;
/** Longest idempotency key or reference. */
export const MAX_KEY_CHARS = 256;

export interface AccountId {
  kind: AccountKind;
  /** Empty for the node's own single accounts (fees, forfeits). */
  owner: string;
}

export function account(kind: AccountKind, owner = ""): AccountId {
  return { kind, owner };
}

export function accountKey(a: AccountId): string {
  return `${a.kind}:${a.owner}`;
}

export interface Move {
  from: AccountId;
  to: AccountId;
  amount: Msat;
}

export interface Posting {
  /** What this movement is, once: a second posting with the same key changes nothing. */
  idem: string;
  reason: Reason;
  moves: Move[];
  jobId?: string;
  shardId?: number;
  assignmentId?: string;
  penaltyId?: number;
  /** The rail's reference (a channel state, a payment hash). */
  reference?: string;
}

export interface Txn {
  id: number;
  idem: string;
  reason: Reason;
  jobId: string | undefined;
  shardId: number | undefined;
  assignmentId: string | undefined;
  penaltyId: number | undefined;
  reference: string | undefined;
  createdAt: number;
  entries: { account: string; delta: bigint }[];
}

/** A movement that would take an account below zero. */
export class InsufficientFundsError extends InfernetError {
  constructor(
    message: string,
    readonly account: string,
    readonly neededMsat: bigint,
    readonly balanceMsat: bigint,
    options: { hint?: string } = {},
  ) {
    super(message, options);
  }
}

/** The ledger's books do not add up: a bug or a tampered database, never a user's mistake. */
export class LedgerInvariantError extends InfernetError {}

interface TxnRow {
  id: bigint;
  idem: string;
  reason: string;
  job_id: string | null;
  shard_id: bigint | null;
  assignment_id: string | null;
  penalty_id: bigint | null;
  reference: string | null;
  created_at: bigint;
}

export class Ledger {
  private readonly db: Store["db"];

  constructor(
    store: Store,
    private readonly now: () => number = Date.now,
  ) {
    this.db = store.db;
  }

  /**
   * Posts a transaction; returns its id and whether it was already there (same idem: nothing
   * changed). Throws InsufficientFundsError, naming the account, when a move would take one below
   * zero; nothing is written then. Safe inside a caller's SQLite transaction (it nests as a savepoint).
   */
  post(p: Posting): { txnId: number; duplicate: boolean } {
    checkPosting(p);
    const write = () => {
      const known = this.db
        .query<{ id: bigint }, [string]>("SELECT id FROM ledger_txns WHERE idem = ?")
        .safeIntegers(true)
        .get(p.idem);
      if (known) return { txnId: Number(known.id), duplicate: true };
      const deltas = new Map<string, { id: AccountId; delta: bigint }>();
      for (const m of p.moves) {
        for (const [id, d] of [
          [m.from, -m.amount],
          [m.to, m.amount],
        ] as const) {
          const key = accountKey(id);
          const entry = deltas.get(key) ?? { id, delta: 0n };
          entry.delta += d;
          deltas.set(key, entry);
        }
      }
      const now = this.now();
      for (const { id, delta } of deltas.values()) {
        const balance = this.balanceOf(id);
        if (id.kind !== "outside" && balance + delta < 0n) {
          throw new InsufficientFundsError(
            `${accountKey(id)} holds ${balance} msat, ${-delta} msat are needed (${p.reason})`,
            accountKey(id),
            -delta,
            balance,
          );
        }
      }
      const txn = this.db
        .query<
          { id: bigint },
          [string, string, string | null, number | null, string | null, number | null, string | null, number]
        >(
          `INSERT INTO ledger_txns (idem, reason, job_id, shard_id, assignment_id, penalty_id, reference, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
        )
        .safeIntegers(true)
        .get(
          p.idem,
          p.reason,
          p.jobId ?? null,
          p.shardId ?? null,
          p.assignmentId ?? null,
          p.penaltyId ?? null,
          p.reference ?? null,
          now,
        ) as { id: bigint };
      for (const { id, delta } of deltas.values()) {
        if (delta === 0n) continue;
        const key = accountKey(id);
        // Created at zero, then moved: a CHECK is tested on the row an upsert would insert, so the
        // first debit of an outside account would fail it.
        this.db
          .query(
            "INSERT OR IGNORE INTO ledger_accounts (id, kind, owner, balance_msat, updated_at) VALUES (?, ?, ?, 0, ?)",
          )
          .run(key, id.kind, id.owner, now);
        this.db
          .query("UPDATE ledger_accounts SET balance_msat = balance_msat + ?, updated_at = ? WHERE id = ?")
          .run(delta, now, key);
        this.db
          .query("INSERT INTO ledger_entries (txn_id, account, delta_msat) VALUES (?, ?, ?)")
          .run(txn.id, key, delta);
      }
      return { txnId: Number(txn.id), duplicate: false };
    };
    return this.db.transaction(write).immediate();
  }

  /** Whether a transaction with this idempotency key was posted. */
  has(idem: string): boolean {
    return this.db.query("SELECT 1 FROM ledger_txns WHERE idem = ?").get(idem) !== null;
  }

  /** An account's balance; an outside account's may be negative, so this is a plain bigint. */
  balanceOf(id: AccountId): bigint {
    const row = this.db
      .query<{ b: bigint }, [string]>("SELECT balance_msat AS b FROM ledger_accounts WHERE id = ?")
      .safeIntegers(true)
      .get(accountKey(id));
    return row?.b ?? 0n;
  }

  /** A balance that cannot be negative (any account but an outside one), as Msat. */
  balance(id: AccountId): Msat {
    if (id.kind === "outside")
      throw new InvalidInputError("an outside account's balance can be negative: use balanceOf");
    return msat(this.balanceOf(id), accountKey(id));
  }

  /** Accounts with their balances, optionally of one kind or one owner. */
  accounts(filter: { kind?: AccountKind; owner?: string } = {}): { id: AccountId; balance: bigint }[] {
    return this.db
      .query<{ kind: string; owner: string; b: bigint }, [string | null, string | null]>(
        `SELECT kind, owner, balance_msat AS b FROM ledger_accounts
         WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR owner = ?2) ORDER BY id`,
      )
      .safeIntegers(true)
      .all(filter.kind ?? null, filter.owner ?? null)
      .map((r) => ({ id: account(r.kind as AccountKind, r.owner), balance: r.b }));
  }

  /** Sum of the balances of accounts of one kind (say, all escrow). */
  total(kind: AccountKind): bigint {
    return this.accounts({ kind }).reduce((a, r) => a + r.balance, 0n);
  }

  /** Transactions, newest last, optionally only those of a job or touching an account. */
  txns(filter: { jobId?: string; account?: AccountId; reason?: Reason } = {}): Txn[] {
    const acc = filter.account ? accountKey(filter.account) : null;
    const rows = this.db
      .query<TxnRow, [string | null, string | null, string | null]>(
        `SELECT * FROM ledger_txns t
         WHERE (?1 IS NULL OR t.job_id = ?1) AND (?3 IS NULL OR t.reason = ?3)
           AND (?2 IS NULL OR EXISTS (SELECT 1 FROM ledger_entries e WHERE e.txn_id = t.id AND e.account = ?2))
         ORDER BY t.id`,
      )
      .safeIntegers(true)
      .all(filter.jobId ?? null, acc, filter.reason ?? null);
    const entries = this.db
      .query<{ account: string; delta: bigint }, [bigint]>(
        "SELECT account, delta_msat AS delta FROM ledger_entries WHERE txn_id = ? ORDER BY rowid",
      )
      .safeIntegers(true);
    return rows.map((r) => ({
      id: Number(r.id),
      idem: r.idem,
      reason: r.reason as Reason,
      jobId: r.job_id ?? undefined,
      shardId: r.shard_id === null ? undefined : Number(r.shard_id),
      assignmentId: r.assignment_id ?? undefined,
      penaltyId: r.penalty_id === null ? undefined : Number(r.penalty_id),
      reference: r.reference ?? undefined,
      createdAt: Number(r.created_at),
      entries: entries.all(r.id),
    }));
  }

  /** Money that moved into `to` through transactions of one reason (say, all fees ever released). */
  credited(to: AccountId, reason?: Reason): Msat {
    const row = this.db
      .query<{ s: bigint | null }, [string, string | null]>(
        `SELECT sum(e.delta_msat) AS s FROM ledger_entries e JOIN ledger_txns t ON t.id = e.txn_id
         WHERE e.account = ?1 AND e.delta_msat > 0 AND (?2 IS NULL OR t.reason = ?2)`,
      )
      .safeIntegers(true)
      .get(accountKey(to), reason ?? null);
    return msat(row?.s ?? 0n);
  }

  /**
   * Checks the books: throws LedgerInvariantError on the first thing that does not add up. Cheap
   * enough for tests to call after every step; a node calls it on start.
   */
  check(): void {
    const q = <T>(sql: string) => this.db.query<T, []>(sql).safeIntegers(true);
    const sum = q<{ s: bigint | null }>("SELECT sum(balance_msat) AS s FROM ledger_accounts").get()?.s ?? 0n;
    if (sum !== 0n) throw new LedgerInvariantError(`the balances sum to ${sum} msat, not 0`);
    const negative = q<{ id: string; b: bigint }>(
      "SELECT id, balance_msat AS b FROM ledger_accounts WHERE kind != 'outside' AND balance_msat < 0 LIMIT 1",
    ).get();
    if (negative) throw new LedgerInvariantError(`${negative.id} is negative: ${negative.b} msat`);
    const drift = q<{ id: string; b: bigint; s: bigint | null }>(
      `SELECT a.id, a.balance_msat AS b, (SELECT sum(delta_msat) FROM ledger_entries e WHERE e.account = a.id) AS s
       FROM ledger_accounts a WHERE a.balance_msat != coalesce(s, 0) LIMIT 1`,
    ).get();
    if (drift)
      throw new LedgerInvariantError(`${drift.id} holds ${drift.b} msat but its entries sum to ${drift.s ?? 0n}`);
    const unbalanced = q<{ id: bigint; s: bigint }>(
      "SELECT txn_id AS id, sum(delta_msat) AS s FROM ledger_entries GROUP BY txn_id HAVING s != 0 LIMIT 1",
    ).get();
    if (unbalanced)
      throw new LedgerInvariantError(`transaction ${unbalanced.id} does not balance: ${unbalanced.s} msat`);
  }
}

function checkPosting(p: Posting): void {
  if (!p.idem || p.idem.length > MAX_KEY_CHARS)
    throw new InvalidInputError("a ledger posting needs a short idempotency key");
  if (p.reference !== undefined && p.reference.length > MAX_KEY_CHARS) {
    throw new InvalidInputError("a ledger reference is too long");
  }
  if (p.moves.length === 0 || p.moves.length > MAX_MOVES_PER_TXN) {
    throw new InvalidInputError(`a ledger posting moves money 1 to ${MAX_MOVES_PER_TXN} times`);
  }
  for (const m of p.moves) {
    msat(m.amount, `${p.reason} amount`);
    if (m.amount === ZERO_MSAT) throw new InvalidInputError(`a ${p.reason} move of 0 msat`);
    if (accountKey(m.from) === accountKey(m.to)) throw new InvalidInputError(`a ${p.reason} move to the same account`);
    for (const id of [m.from, m.to]) {
      if (!ACCOUNT_KINDS.includes(id.kind)) throw new InvalidInputError(`no account kind ${String(id.kind)}`);
      if (id.owner.length > MAX_KEY_CHARS) throw new InvalidInputError("an account owner is too long");
    }
  }
  add(...p.moves.map((m) => m.amount));
}
