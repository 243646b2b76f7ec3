import { createHash, randomBytes } from "node:crypto";
import { sleep } from "../../util/abort.ts";
import { InfernetError, InvalidInputError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import { type Msat, msat, scale } from "../amount.ts";
import type { EscrowRail, Hold, PaymentRail, Receipt } from "../rail.ts";
import type { EscrowRecord, EscrowStore } from "./escrow-store.ts";
import { LndError } from "./lnd-errors.ts";
import type { LndRest } from "./lnd-rest.ts";

/**
 * Lightning behind the rail interfaces, through the user's own LND node.
 *
 * Paying (`pay`): keysend to a provider's node public key, or a BOLT11 invoice for exactly the amount.
 *
 * Escrow with hold invoices (one per job): `hold` makes a preimage, stores it, and asks LND for a
 * hold invoice locked to its hash; the client pays it and the payment stays ACCEPTED (held along the
 * route, not yet the aggregator's); `waitFunded` sees that; on verification `release` settles with
 * the preimage (the client's payment completes); on failure or deadline `refund` cancels (the HTLCs
 * fail back and the client's funds return). A held HTLC must be resolved before it nears its CLTV
 * expiry (LND's final CLTV delta, 80 blocks by default, about 13 hours), so jobs paid this way must
 * finish, or be refunded, well inside that.
 */

const log = logger("payments:lightning");

/** Routing fee allowed by default: 1% of the amount (parts per million)... */
export const DEFAULT_MAX_FEE_PPM = 10_000n;
/** ...but never less than 10 sat, so small payments can still find a route. */
export const MIN_FEE_LIMIT: Msat = msat(10_000n);
/** How often `waitFunded` looks at the invoice. */
export const FUNDED_POLL_MS = 250;
/** Longest time a client is given to fund a hold (the invoice expiry); holds tie up liquidity along the route. */
export const MAX_HOLD_EXPIRY_SECONDS = 3600;
/** Longest job id kept in the table and the invoice memo. */
export const MAX_JOB_ID_CHARS = 128;

const PUBKEY = /^0[23][0-9a-f]{64}$/;

/** An escrow operation that cannot be done in the hold's current state. */
export class EscrowError extends InfernetError {}

export interface LightningRailInit {
  lnd: LndRest;
  store: EscrowStore;
  maxFeePpm?: bigint;
  minFeeLimit?: Msat;
  /** Milliseconds since the epoch (tests). */
  now?: () => number;
  pollMs?: number;
}

export class LightningRail implements PaymentRail, EscrowRail {
  readonly kind = "lightning" as const;
  readonly lnd: LndRest;
  readonly #store: EscrowStore;
  readonly #maxFeePpm: bigint;
  readonly #minFeeLimit: Msat;
  readonly #now: () => number;
  readonly #pollMs: number;

  constructor(init: LightningRailInit) {
    this.lnd = init.lnd;
    this.#store = init.store;
    this.#maxFeePpm = init.maxFeePpm ?? DEFAULT_MAX_FEE_PPM;
    this.#minFeeLimit = init.minFeeLimit ?? MIN_FEE_LIMIT;
    this.#now = init.now ?? Date.now;
    this.#pollMs = init.pollMs ?? FUNDED_POLL_MS;
  }

  /** The routing fee a payment of `amount` may cost. */
  feeLimit(amount: Msat): Msat {
    const share = scale(amount, this.#maxFeePpm, 1_000_000n, "up");
    if (share < this.#minFeeLimit) return this.#minFeeLimit;
    return share;
  }

  /** Keysend when `payee` is a node public key (hex); otherwise `payee` is a BOLT11 invoice for `amount`. */
  async pay(payee: string, amount: Msat, memo: string, signal?: AbortSignal): Promise<Receipt> {
    const target = payee.trim();
    const fee = this.feeLimit(amount);
    let result: Awaited<ReturnType<LndRest["keysend"]>>;
    if (PUBKEY.test(target)) result = await this.lnd.keysend(target, amount, fee, signal);
    else if (/^(lightning:)?ln/i.test(target)) result = await this.lnd.payInvoice(target, amount, fee, { signal });
    else throw new InvalidInputError("a Lightning payee is a node public key (hex) or a BOLT11 invoice");
    log.info("paid over Lightning", {
      hash: result.paymentHash,
      amount: String(amount),
      fee: String(result.fee),
      memo,
    });
    return { rail: "lightning", amount, reference: result.paymentHash, at: this.#now() };
  }

  /** A hold invoice for the job (idempotent: the same job gets its existing open hold back). */
  async hold(jobId: string, amount: Msat, expirySeconds: number, signal?: AbortSignal): Promise<Hold> {
    checkJobId(jobId);
    if (amount <= 0n) throw new InvalidInputError("a hold of nothing");
    if (!Number.isInteger(expirySeconds) || expirySeconds < 1 || expirySeconds > MAX_HOLD_EXPIRY_SECONDS) {
      throw new InvalidInputError(`a hold's expiry is 1 to ${MAX_HOLD_EXPIRY_SECONDS} seconds, not ${expirySeconds}`);
    }
    let record = this.#store.get(jobId);
    if (record && record.state !== "open") throw new EscrowError(`job ${jobId}'s hold was already ${record.state}`);
    if (record && record.amount !== amount) {
      throw new EscrowError(`job ${jobId} already has a hold of ${record.amount} msat, not ${amount} msat`);
    }
    if (record?.invoice) return { invoice: record.invoice, paymentHash: record.paymentHash };
    if (!record) {
      const preimage = randomBytes(32).toString("hex");
      const created = this.#now();
      record = {
        jobId,
        paymentHash: createHash("sha256").update(Buffer.from(preimage, "hex")).digest("hex"),
        preimage,
        amount,
        invoice: undefined,
        state: "open",
        createdAt: created,
        expiresAt: created + expirySeconds * 1000,
        settledAt: undefined,
      };
      // Stored before LND hears of it: a crash after LND made the invoice still leaves us the preimage.
      this.#store.insert(record);
    }
    const invoice = await this.#issue(record, expirySeconds, signal);
    this.#store.update(jobId, { invoice });
    log.info("hold created", { job: jobId, hash: record.paymentHash, amount: String(amount) });
    return { invoice, paymentHash: record.paymentHash };
  }

  /** Resolves once the client's payment is held (ACCEPTED); the caller's signal is the deadline. */
  async waitFunded(jobId: string, signal?: AbortSignal): Promise<void> {
    const record = this.#record(jobId);
    for (;;) {
      const inv = await this.lnd.lookupInvoice(record.paymentHash, signal);
      if (inv?.state === "ACCEPTED" || inv?.state === "SETTLED") return;
      if (!inv || inv.state === "CANCELED")
        throw new EscrowError(`job ${jobId}'s hold was cancelled before it was paid`);
      await sleep(this.#pollMs, signal);
    }
  }

  /** Settles the held payment with the preimage. LND only holds a payment of the invoice's full amount. */
  async release(jobId: string, signal?: AbortSignal): Promise<Receipt> {
    const record = this.#record(jobId);
    if (record.state === "settled") return this.#receipt(record, record.settledAt ?? record.createdAt);
    if (record.state === "canceled") throw new EscrowError(`job ${jobId}'s hold was refunded; it cannot be released`);
    const inv = await this.lnd.lookupInvoice(record.paymentHash, signal);
    if (inv?.state === "ACCEPTED") await this.lnd.settleHoldInvoice(record.preimage, signal);
    else if (inv?.state === "CANCELED") {
      this.#store.update(jobId, { state: "canceled" });
      throw new EscrowError(`job ${jobId}'s hold was cancelled at the node; it cannot be released`);
    } else if (inv?.state !== "SETTLED") {
      throw new EscrowError(`job ${jobId}'s hold is not paid yet`, { hint: "wait for the client's payment" });
    }
    const at = this.#now();
    this.#store.update(jobId, { state: "settled", settledAt: at });
    log.info("hold released", { job: jobId, hash: record.paymentHash });
    return this.#receipt(record, at);
  }

  /** Cancels the hold: a held payment fails back to the client, an unpaid invoice can no longer be paid. */
  async refund(jobId: string, signal?: AbortSignal): Promise<void> {
    const record = this.#record(jobId);
    if (record.state === "canceled") return;
    if (record.state === "settled") throw new EscrowError(`job ${jobId}'s hold was released; it cannot be refunded`);
    try {
      await this.lnd.cancelHoldInvoice(record.paymentHash, signal);
    } catch (err) {
      const inv = err instanceof LndError ? await this.lnd.lookupInvoice(record.paymentHash, signal) : undefined;
      if (inv?.state === "SETTLED") {
        this.#store.update(jobId, { state: "settled", settledAt: this.#now() });
        throw new EscrowError(`job ${jobId}'s hold was already settled at the node; it cannot be refunded`);
      }
      // Never issued (a crash before LND answered): nothing to cancel there.
      if (!(err instanceof LndError && inv === undefined && !record.invoice)) throw err;
    }
    this.#store.update(jobId, { state: "canceled" });
    log.info("hold refunded", { job: jobId, hash: record.paymentHash });
  }

  /** addHoldInvoice, or, when an earlier try got through before a crash, the invoice LND already has. */
  async #issue(record: EscrowRecord, expirySeconds: number, signal?: AbortSignal): Promise<string> {
    try {
      const memo = `infernet job ${record.jobId}`;
      return (await this.lnd.addHoldInvoice(record.paymentHash, record.amount, memo, expirySeconds, signal)).invoice;
    } catch (err) {
      const existing = err instanceof LndError ? await this.lnd.lookupInvoice(record.paymentHash, signal) : undefined;
      if (existing?.state === "OPEN" && existing.amount === record.amount) return existing.invoice;
      throw err;
    }
  }

  #record(jobId: string): EscrowRecord {
    const record = this.#store.get(jobId);
    if (!record) throw new EscrowError(`job ${jobId} has no Lightning hold`);
    return record;
  }

  #receipt(record: EscrowRecord, at: number): Receipt {
    return { rail: "lightning", amount: record.amount, reference: record.paymentHash, at };
  }
}

function checkJobId(jobId: string): void {
  if (jobId.length === 0 || jobId.length > MAX_JOB_ID_CHARS || /[\p{Cc}]/u.test(jobId)) {
    throw new InvalidInputError(`a job id is 1 to ${MAX_JOB_ID_CHARS} printable characters`);
  }
}
