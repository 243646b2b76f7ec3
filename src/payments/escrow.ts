import { feeMsat } from "../jobs/fee.ts";
import { add, formatMsat, type Msat, min, msat, ZERO_MSAT } from "./amount.ts";
import { account, InsufficientFundsError, type Ledger, type Move } from "./ledger.ts";

/**
 * An aggregator's money rules, as ledger transactions (ledger.ts). A client's payments come in as
 * credit (`deposit`); submitting a job locks its quote in the job's escrow (`lock`) before any shard
 * is dispatched; each verified copy releases its price to its provider's earnings and the fee to the
 * aggregator (`release`); when the job ends, whatever is left goes back to the client's credit
 * (`refund`). A provider caught cheating gives back what it was released for copies of jobs still
 * running (`clawBack`, into their escrow) and forfeits its bond and the rest of its pending earnings
 * (`forfeit`). Earnings leave the books only when they are paid out over a rail (`payOut`).
 *
 * Every transaction's idempotency key is what it is for: a copy is released once (`release:<copy>`),
 * a job refunded once per ending, a penalty applied once, a channel state deposited once; so the
 * aggregator can repeat any of them after a crash without paying anything twice.
 */

/** A verified copy as release takes it. */
export interface PaidCopy {
  assignmentId: string;
  provider: string;
  shardId: number;
  amount: Msat;
}

export class Escrow {
  constructor(private readonly ledger: Ledger) {}

  /** A payment that arrived over `rail` (its state or hash as `reference`) becomes the client's credit. */
  deposit(client: string, amount: Msat, rail: string, reference: string): boolean {
    return !this.ledger.post({
      idem: `deposit:${rail}:${reference}`,
      reason: "deposit",
      reference,
      moves: [{ from: account("outside", rail), to: account("client", client), amount }],
    }).duplicate;
  }

  /** A provider's payment of a bond. */
  postBond(provider: string, amount: Msat, rail: string, reference: string): boolean {
    return !this.ledger.post({
      idem: `bond:${rail}:${reference}`,
      reason: "bond",
      reference,
      moves: [{ from: account("outside", rail), to: account("bond", provider), amount }],
    }).duplicate;
  }

  /** A payment for this node's own work (a payout from an aggregator, a direct job's tokens). */
  income(payer: string, amount: Msat, rail: string, reference: string): boolean {
    return !this.ledger.post({
      idem: `income:${rail}:${reference}`,
      reason: "income",
      reference,
      moves: [{ from: account("outside", rail), to: account("income", payer), amount }],
    }).duplicate;
  }

  credit(client: string): Msat {
    return this.ledger.balance(account("client", client));
  }

  escrowed(jobId: string): Msat {
    return this.ledger.balance(account("escrow", jobId));
  }

  earnings(provider: string): Msat {
    return this.ledger.balance(account("earnings", provider));
  }

  bond(provider: string): Msat {
    return this.ledger.balance(account("bond", provider));
  }

  /** Throws InsufficientFundsError, with a hint, when the client's credit cannot cover `amount`. */
  checkCredit(client: string, amount: Msat): void {
    const have = this.credit(client);
    if (have < amount) throw shortOfCredit(client, amount, have);
  }

  /** Locks a job's quote from the client's credit (in the caller's transaction, with the job itself). */
  lock(jobId: string, client: string, amount: Msat): void {
    if (amount === ZERO_MSAT) return;
    this.checkCredit(client, amount);
    this.ledger.post({
      idem: `lock:${jobId}`,
      reason: "lock",
      jobId,
      moves: [{ from: account("client", client), to: account("escrow", jobId), amount }],
    });
  }

  /**
   * Pays a shard's verified copies from the job's escrow: each its price to its provider, and the fee
   * on it (rounded up per copy) to the aggregator. One transaction per copy, keyed by the copy, so
   * a shard reopened and verified again pays only its new copies.
   */
  release(jobId: string, copies: PaidCopy[], feePercent: number): void {
    for (const c of copies) {
      if (c.amount === ZERO_MSAT) continue;
      const fee = msat(feeMsat(Number(c.amount), feePercent), "fee");
      const from = account("escrow", jobId);
      const moves: Move[] = [{ from, to: account("earnings", c.provider), amount: c.amount }];
      if (fee > ZERO_MSAT) moves.push({ from, to: account("fees"), amount: fee });
      this.ledger.post({
        idem: `release:${c.assignmentId}`,
        reason: "release",
        jobId,
        shardId: c.shardId,
        assignmentId: c.assignmentId,
        moves,
      });
    }
  }

  /** Returns what is left in a job's escrow to its client; a no-op for an empty escrow. */
  refund(jobId: string, client: string, why: string): Msat {
    const left = this.escrowed(jobId);
    if (left === ZERO_MSAT) return left;
    // Keyed by the amount's position in the job's history (a job refunded, then paid into again by a
    // claw-back, is refunded again).
    const n = this.ledger.txns({ jobId, reason: "refund" }).length;
    this.ledger.post({
      idem: `refund:${jobId}:${n}`,
      reason: "refund",
      jobId,
      reference: why,
      moves: [{ from: account("escrow", jobId), to: account("client", client), amount: left }],
    });
    return left;
  }

  /**
   * Undoes the release of a convicted provider's copy while its job still runs: the price back from
   * its earnings (as much as is still there) and the fee back from the aggregator, both into the
   * job's escrow, so the client pays only for the copy that replaces it.
   */
  clawBack(jobId: string, assignmentId: string): Msat {
    const [release] = this.ledger.txns({ jobId, reason: "release" }).filter((t) => t.assignmentId === assignmentId);
    if (!release || this.ledger.has(`clawback:${assignmentId}`)) return ZERO_MSAT;
    const escrow = account("escrow", jobId);
    const moves: Move[] = [];
    for (const e of release.entries) {
      if (e.delta <= 0n) continue;
      const [kind, ...rest] = e.account.split(":");
      const from = account(kind === "fees" ? "fees" : "earnings", rest.join(":"));
      const held = this.ledger.balance(from);
      const amount = min(msat(e.delta), held);
      if (amount > ZERO_MSAT) moves.push({ from, to: escrow, amount });
    }
    if (moves.length === 0) return ZERO_MSAT;
    this.ledger.post({ idem: `clawback:${assignmentId}`, reason: "forfeit", jobId, assignmentId, moves });
    return add(...moves.map((m) => m.amount));
  }

  /** A convicted provider's bond and pending earnings go to the aggregator's forfeits, once per penalty. */
  forfeit(provider: string, penaltyId: number, jobId?: string): Msat {
    const forfeits = account("forfeits");
    const moves: Move[] = [];
    for (const from of [account("earnings", provider), account("bond", provider)]) {
      const amount = this.ledger.balance(from);
      if (amount > ZERO_MSAT) moves.push({ from, to: forfeits, amount });
    }
    if (moves.length === 0 || this.ledger.has(`forfeit:${penaltyId}`)) return ZERO_MSAT;
    this.ledger.post({
      idem: `forfeit:${penaltyId}`,
      reason: "forfeit",
      penaltyId,
      ...(jobId ? { jobId } : {}),
      moves,
    });
    return add(...moves.map((m) => m.amount));
  }

  /** Earnings paid to a provider over a rail (after the rail acknowledged the payment). */
  payOut(provider: string, amount: Msat, rail: string, reference: string): void {
    this.ledger.post({
      idem: `payout:${rail}:${reference}`,
      reason: "payout",
      reference,
      moves: [{ from: account("earnings", provider), to: account("outside", rail), amount }],
    });
  }
}

function shortOfCredit(client: string, amount: Msat, have: Msat): InsufficientFundsError {
  return new InsufficientFundsError(
    `the job's quote is ${formatMsat(amount)} but ${client}'s credit here is ${formatMsat(have)}`,
    `client:${client}`,
    amount,
    have,
    { hint: "pay the aggregator more over your channel (infernet wallet), or lower --max-price" },
  );
}
