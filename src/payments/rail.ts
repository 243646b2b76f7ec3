import type { Msat } from "./amount.ts";

/**
 * The ways money moves between peers. A payment rail pays a peer; an escrow rail holds a client's
 * payment for one job until the aggregator releases it to itself (the job verified) or refunds it
 * (the job failed or its deadline passed). Payment channels and Lightning both sit behind these, so
 * the job code never knows which one carried the money; the ledger (ledger.ts) records each move by
 * the rail's `kind` and the receipt's `reference`.
 */

export type RailKind = "channel" | "lightning";

/** Proof that a payment happened, as the rail reports it. */
export interface Receipt {
  rail: RailKind;
  amount: Msat;
  /** The payment hash (Lightning, hex) or the channel state id. */
  reference: string;
  /** Milliseconds since the epoch when the rail confirmed it. */
  at: number;
}

export interface PaymentRail {
  readonly kind: RailKind;
  /**
   * Pays `amount` to `payee`. What a payee is depends on the rail: a peer id for a channel; for
   * Lightning a node's public key (keysend) or a BOLT11 invoice for exactly `amount`.
   */
  pay(payee: string, amount: Msat, memo: string, signal?: AbortSignal): Promise<Receipt>;
}

/** A hold for one job: what the client must pay to fund it. */
export interface Hold {
  /** A BOLT11 invoice for the Lightning rail. */
  invoice: string;
  /** Hex; the client's payment proves nothing until the hold is released with the preimage. */
  paymentHash: string;
}

export interface EscrowRail {
  /** Opens a hold of `amount` for `jobId` that the client can fund until `expirySeconds` from now. */
  hold(jobId: string, amount: Msat, expirySeconds: number, signal?: AbortSignal): Promise<Hold>;
  /**
   * Waits until the client's payment is held (locked at the rail, not yet ours), so the job can start.
   * Added to the interface: without it the aggregator cannot tell a funded hold from an unpaid one.
   */
  waitFunded(jobId: string, signal?: AbortSignal): Promise<void>;
  /** Takes the held payment (the job verified). Idempotent: a second release returns the same receipt. */
  release(jobId: string, signal?: AbortSignal): Promise<Receipt>;
  /** Gives the payment back to the client (failure or deadline). Idempotent; refused once released. */
  refund(jobId: string, signal?: AbortSignal): Promise<void>;
}
