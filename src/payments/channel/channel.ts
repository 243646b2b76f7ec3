import { Transaction } from "bitcoinjs-lib";
import { InvalidInputError } from "../../util/errors.ts";
import { add, type Msat, msat, sub, ZERO_MSAT } from "../amount.ts";
import {
  ChannelClosedError,
  ChannelExpiredError,
  InvalidAmountError,
  MalformedCommitmentError,
  ReplayedUpdateError,
  SequenceGapError,
  UnknownChannelError,
} from "./errors.ts";
import type { Signer } from "./keys.ts";
import { type ChannelNetwork, equalBytes } from "./script.ts";
import {
  type ChannelState,
  type ChannelTerms,
  checkSameTx,
  closeTx,
  commitmentTx,
  completed,
  MAX_STATE_SEQUENCE,
  payableMsat,
  refundTx,
  sighash,
  signInput,
  verifySignature,
} from "./transactions.ts";

/**
 * Spilman-style unidirectional channels as pure state machines (no I/O): `PayerChannel` signs each
 * new commitment paying the payee more; `PayeeChannel` checks every update (channel, sequence,
 * amounts, the exact transaction, the payer's signature) before anything counts as paid, and can
 * close alone by adding its signature to the latest commitment. Persistence and the wire are the
 * caller's: `PayeeChannel.check` returns the next state without changing anything, so the caller
 * writes it to SQLite and only then `apply`s and acknowledges it.
 */

/**
 * Blocks before the refund height by which the payee must have closed: from the refund height the
 * payer alone can take the whole capacity back, so the close must be confirmed well before. A day.
 */
export const CLOSE_SAFETY_MARGIN_BLOCKS = 144;
/** A new channel must stay usable (before `mustCloseBy`) for at least this many blocks: a day. */
export const MIN_USEFUL_BLOCKS = 144;
/**
 * Lowest commitment fee: the largest commitment (two outputs, 73-byte signatures) is 181 vB, at
 * Bitcoin Core's default minrelaytxfee of 1 sat/vB.
 */
export const MIN_COMMITMENT_FEE_SATS = 181n;
/** Highest commitment fee a payee accepts by default (it only lowers what the payer gets back). */
export const DEFAULT_MAX_COMMITMENT_FEE_SATS = 100_000n;
/** Smallest channel: the fee and two non-dust outputs must fit with room to pay. */
export const MIN_CAPACITY_SATS = 10_000n;
/** Largest channel a payee accepts by default: 1 BTC. */
export const DEFAULT_MAX_CAPACITY_SATS = 100_000_000n;

/** A channel's identity and terms: id is the funding outpoint, "txid:vout". */
export interface ChannelParams extends ChannelTerms {
  id: string;
  network: ChannelNetwork;
}

/** A state with the payer's signature on its commitment (sequence 0: nothing paid, nothing signed). */
export interface SignedState extends ChannelState {
  /** The unsigned commitment, as signed. Empty at sequence 0. */
  tx: Uint8Array;
  /** The payer's DER + hashtype signature on it. Empty at sequence 0. */
  signature: Uint8Array;
}

/** One payment as it travels from payer to payee. */
export interface ChannelUpdate {
  channelId: string;
  sequence: number;
  /** Total paid over the channel's life after this payment. */
  paidMsat: Msat;
  /** This payment: paidMsat less the previous state's (the payee checks it equals what it accepted last). */
  amountMsat: Msat;
  tx: Uint8Array;
  signature: Uint8Array;
  memo: string;
}

export const OPENING_STATE: SignedState = {
  sequence: 0,
  paidMsat: ZERO_MSAT,
  tx: new Uint8Array(0),
  signature: new Uint8Array(0),
};

export function channelId(txid: string, vout: number): string {
  return `${txid}:${vout}`;
}

/** The height from which the payee must no longer count payments and must have closed. */
export function mustCloseBy(refundHeight: number): number {
  return refundHeight - CLOSE_SAFETY_MARGIN_BLOCKS;
}

export class PayerChannel {
  private ackedState: SignedState;
  private sentState: SignedState;
  /** States sent and not acknowledged yet, by sequence (several while updates are pipelined). */
  private readonly inFlight = new Map<number, SignedState>();

  constructor(
    readonly params: ChannelParams,
    private readonly signer: Signer,
    acked: SignedState = OPENING_STATE,
  ) {
    if (!equalBytes(signer.publicKey, params.payerKey)) throw new InvalidInputError("the signer is not the payer key");
    this.ackedState = acked;
    this.sentState = acked;
  }

  get id(): string {
    return this.params.id;
  }

  /** The latest state the payee acknowledged. */
  get acked(): SignedState {
    return this.ackedState;
  }

  /** The latest state signed and sent (equal to `acked` when nothing is in flight). */
  get latest(): SignedState {
    return this.sentState;
  }

  /** What can still be paid after the latest sent state. */
  get remainingMsat(): Msat {
    return sub(msat(payableMsat(this.params)), this.sentState.paidMsat);
  }

  /** Signs the next commitment, paying `amountMsat` more than the latest sent state. */
  update(amountMsat: Msat, memo = ""): ChannelUpdate {
    if (amountMsat <= 0n) throw new InvalidAmountError("a payment must be more than 0 msat");
    if (amountMsat > this.remainingMsat) {
      throw new InvalidAmountError(
        `${amountMsat} msat is more than the ${this.remainingMsat} msat left in the channel`,
      );
    }
    const sequence = this.sentState.sequence + 1;
    if (sequence > MAX_STATE_SEQUENCE) throw new ChannelClosedError("the channel has used every sequence number");
    const paidMsat = add(this.sentState.paidMsat, amountMsat);
    const tx = commitmentTx(this.params, { sequence, paidMsat });
    const signature = signInput(tx, this.params, this.signer);
    const state: SignedState = { sequence, paidMsat, tx: tx.toBuffer(), signature };
    this.sentState = state;
    this.inFlight.set(sequence, state);
    return { channelId: this.params.id, sequence, paidMsat, amountMsat, tx: state.tx, signature, memo };
  }

  /** The payee acknowledged `sequence`: that state (and every one before it) is settled. */
  acknowledged(sequence: number): SignedState {
    const state = this.inFlight.get(sequence);
    if (!state) throw new MalformedCommitmentError(`no update ${sequence} is in flight on ${this.id}`);
    for (const s of this.inFlight.keys()) if (s <= sequence) this.inFlight.delete(s);
    this.ackedState = state;
    return state;
  }

  /** Updates after the acknowledged state are void (refused, or unknown after a timeout until `adopt`). */
  rollback(): void {
    this.inFlight.clear();
    this.sentState = this.ackedState;
  }

  /**
   * Takes the payee's reported state (after a reconnect) as the truth, once it proves to be one this
   * payer signed: the signature must be ours on exactly that state's commitment, and no older than
   * what the payee acknowledged before. States in flight are then void.
   */
  adopt(state: ChannelState & { signature: Uint8Array }): SignedState {
    if (state.sequence < this.ackedState.sequence) {
      throw new ReplayedUpdateError(
        `the payee reports state ${state.sequence}, older than acknowledged ${this.ackedState.sequence}`,
      );
    }
    let adopted: SignedState = OPENING_STATE;
    if (state.sequence > 0) {
      const tx = commitmentTx(this.params, state);
      verifySignature(sighash(tx, this.params), this.params.payerKey, state.signature);
      adopted = { sequence: state.sequence, paidMsat: state.paidMsat, tx: tx.toBuffer(), signature: state.signature };
    }
    this.inFlight.clear();
    this.ackedState = adopted;
    this.sentState = adopted;
    return adopted;
  }

  /** The cooperative close of the acknowledged state with `feeSats`: the transaction and the payer's signature. */
  proposeClose(feeSats: bigint): { tx: Transaction; signature: Uint8Array } {
    const tx = closeTx(this.params, this.ackedState.paidMsat, feeSats);
    return { tx, signature: signInput(tx, this.params, this.signer) };
  }

  /** The close `tx` with both signatures, once the payee's verifies. */
  completeClose(tx: Transaction, payerSig: Uint8Array, payeeSig: Uint8Array): Transaction {
    verifySignature(sighash(tx, this.params), this.params.payeeKey, payeeSig);
    return completed(this.params, tx, payerSig, payeeSig);
  }

  /** The refund to `output`: valid from the refund height (the payee never closed). */
  refund(output: Uint8Array, feeSats: bigint): Transaction {
    return refundTx(this.params, output, feeSats, this.signer);
  }
}

/** An update the payee accepts: the state it leads to and what it adds. */
export interface Accepted {
  state: SignedState;
  increase: Msat;
}

export interface AcceptOptions {
  /** The chain's current height: no payment counts from `mustCloseBy`. */
  height: number;
  /** What this payment must be for (the caller's price of the work); absent: any increase. */
  expectedMsat?: Msat;
}

export class PayeeChannel {
  private current: SignedState;
  private closing = false;

  constructor(
    readonly params: ChannelParams,
    private readonly signer: Signer,
    state: SignedState = OPENING_STATE,
    closing = false,
  ) {
    if (!equalBytes(signer.publicKey, params.payeeKey)) throw new InvalidInputError("the signer is not the payee key");
    this.current = state;
    this.closing = closing;
  }

  get id(): string {
    return this.params.id;
  }

  /** The latest accepted state: what the payee can close with. */
  get state(): SignedState {
    return this.current;
  }

  get mustCloseBy(): number {
    return mustCloseBy(this.params.refundHeight);
  }

  /**
   * Checks `update` against the latest accepted state and returns the state it leads to and the
   * amount it adds, changing nothing. Throws a `ChannelError` subclass saying why it is refused.
   */
  check(update: ChannelUpdate, options: AcceptOptions): Accepted {
    const accepted = this.checkAfter(this.current, update, options.height, options.expectedMsat);
    this.verify(accepted.state);
    return accepted;
  }

  /**
   * Checks consecutive updates (pipelined, they arrive together) and returns the longest run of them
   * that is valid, plus why the next one is refused, if one is. Only the last signature of the run is
   * verified when it holds: that state pays at least as much as every one before it, so it alone is
   * what the payee needs to hold to count them all as paid (Spilman: the newest state supersedes).
   * When it does not verify, each is verified in turn to find where the valid run ends.
   */
  checkBatch(
    updates: ChannelUpdate[],
    options: { height: number; expectedMsat?: (Msat | undefined)[] },
  ): { accepted: Accepted[]; refusal: Error | undefined } {
    const accepted: Accepted[] = [];
    let refusal: Error | undefined;
    let last = this.current;
    for (const [i, update] of updates.entries()) {
      try {
        const next = this.checkAfter(last, update, options.height, options.expectedMsat?.[i]);
        accepted.push(next);
        last = next.state;
      } catch (err) {
        refusal = err as Error;
        break;
      }
    }
    const newest = accepted.at(-1);
    if (!newest) return { accepted, refusal };
    try {
      this.verify(newest.state);
      return { accepted, refusal };
    } catch {
      for (const [i, a] of accepted.entries()) {
        try {
          this.verify(a.state);
        } catch (err) {
          return { accepted: accepted.slice(0, i), refusal: err as Error };
        }
      }
      return { accepted, refusal };
    }
  }

  /** Every check of `update` following `last` but its signature (see `verify`). */
  private checkAfter(
    last: SignedState,
    update: ChannelUpdate,
    height: number,
    expectedMsat: Msat | undefined,
  ): Accepted {
    if (update.channelId !== this.params.id)
      throw new UnknownChannelError(`update for ${update.channelId} on ${this.id}`);
    if (this.closing) throw new ChannelClosedError(`channel ${this.id} is closing`);
    if (height >= this.mustCloseBy) {
      throw new ChannelExpiredError(`channel ${this.id} must close by height ${this.mustCloseBy}; it is ${height}`);
    }
    if (update.sequence <= last.sequence) {
      throw new ReplayedUpdateError(`update ${update.sequence} on ${this.id} is not newer than state ${last.sequence}`);
    }
    if (update.sequence !== last.sequence + 1) {
      throw new SequenceGapError(`update ${update.sequence} on ${this.id} skips from state ${last.sequence}`);
    }
    if (update.paidMsat <= last.paidMsat) {
      throw new InvalidAmountError(
        `update ${update.sequence} pays ${update.paidMsat} msat, not more than ${last.paidMsat}`,
      );
    }
    if (update.paidMsat > payableMsat(this.params)) {
      throw new InvalidAmountError(
        `${update.paidMsat} msat is more than the channel can pay (${payableMsat(this.params)})`,
      );
    }
    const increase = sub(update.paidMsat, last.paidMsat);
    if (increase !== update.amountMsat) {
      throw new InvalidAmountError(
        `update ${update.sequence} adds ${increase} msat but says it pays ${update.amountMsat}`,
      );
    }
    if (expectedMsat !== undefined && increase !== expectedMsat) {
      throw new InvalidAmountError(`update ${update.sequence} pays ${increase} msat; ${expectedMsat} was due`);
    }
    checkSameTx(update.tx, commitmentTx(this.params, update), "commitment");
    return {
      state: { sequence: update.sequence, paidMsat: update.paidMsat, tx: update.tx, signature: update.signature },
      increase,
    };
  }

  /** The payer's signature on the state's commitment (BIP143, SIGHASH_ALL, low S), or BadSignatureError. */
  private verify(state: SignedState): void {
    const tx = commitmentTx(this.params, state);
    verifySignature(sighash(tx, this.params), this.params.payerKey, state.signature);
  }

  /** Makes `state` (from `check` or `checkBatch`, already stored) the latest. */
  apply(state: SignedState): void {
    if (state.sequence <= this.current.sequence) {
      throw new SequenceGapError(`state ${state.sequence} is not newer than ${this.current.sequence}`);
    }
    this.current = state;
  }

  /** The latest commitment with both signatures: the payee's unilateral close, broadcastable at once. */
  closeUnilaterally(): Transaction {
    if (this.current.sequence === 0) throw new InvalidAmountError(`nothing has been paid on ${this.id}`);
    const tx = Transaction.fromBuffer(this.current.tx);
    this.closing = true;
    return completed(this.params, tx, this.current.signature, signInput(tx, this.params, this.signer));
  }

  /**
   * Signs the payer's cooperative close when it pays this payee what the latest state does: returns
   * the complete transaction and this payee's signature. The channel takes no payment after it.
   */
  signClose(proposal: { tx: Uint8Array; signature: Uint8Array; feeSats: bigint }): {
    tx: Transaction;
    signature: Uint8Array;
  } {
    const expected = closeTx(this.params, this.current.paidMsat, proposal.feeSats);
    checkSameTx(proposal.tx, expected, "close transaction");
    verifySignature(sighash(expected, this.params), this.params.payerKey, proposal.signature);
    const signature = signInput(expected, this.params, this.signer);
    this.closing = true;
    return { tx: completed(this.params, expected, proposal.signature, signature), signature };
  }
}
