import { describe, expect, test } from "bun:test";
import { Transaction } from "bitcoinjs-lib";
import { type Msat, msat } from "../amount.ts";
import { type ChannelUpdate, mustCloseBy, PayeeChannel, PayerChannel } from "./channel.ts";
import { ecpair } from "./keys.ts";
import { checkFunding, checkTerms } from "./open.ts";
import { TEST_HEIGHT, testChannel } from "./test-channel.ts";
import { commitmentTx, signInput } from "./transactions.ts";

const at = { height: TEST_HEIGHT };

function pair() {
  const t = testChannel();
  return { ...t, payerCh: new PayerChannel(t.params, t.payer), payeeCh: new PayeeChannel(t.params, t.payee) };
}

/** Applies `update` as the protocol does: check, then apply. Returns the increase. */
function accept(payee: PayeeChannel, update: ChannelUpdate, expectedMsat?: Msat): Msat {
  const { state, increase } = payee.check(update, { ...at, ...(expectedMsat !== undefined ? { expectedMsat } : {}) });
  payee.apply(state);
  return increase;
}

function errorName(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    return (err as Error).name;
  }
  return "no error";
}

describe("a channel's payments", () => {
  test("each update pays more, the payee returns the increase and holds the latest state", () => {
    const { payerCh, payeeCh } = pair();
    expect(accept(payeeCh, payerCh.update(msat(1_500n), "job-1"), msat(1_500n))).toBe(msat(1_500n));
    payerCh.acknowledged(1);
    expect(accept(payeeCh, payerCh.update(msat(2_001n)))).toBe(msat(2_001n));
    payerCh.acknowledged(2);
    expect(payeeCh.state.sequence).toBe(2);
    expect(payeeCh.state.paidMsat).toBe(msat(3_501n));
    expect(payerCh.acked.paidMsat).toBe(msat(3_501n));
  });

  test("replayed and older updates are refused, a skipped sequence too", () => {
    const { payerCh, payeeCh } = pair();
    const first = payerCh.update(msat(1_000n));
    const second = payerCh.update(msat(1_000n));
    const third = payerCh.update(msat(1_000n));
    expect(errorName(() => payeeCh.check(second, at))).toBe("SequenceGapError");
    accept(payeeCh, first);
    accept(payeeCh, second);
    expect(errorName(() => payeeCh.check(second, at))).toBe("ReplayedUpdateError");
    expect(errorName(() => payeeCh.check(first, at))).toBe("ReplayedUpdateError");
    expect(accept(payeeCh, third)).toBe(msat(1_000n));
  });

  test("a tampered amount is refused whichever fields are changed", () => {
    const { payerCh, payeeCh, params } = pair();
    const update = payerCh.update(msat(10_000n));
    const more = msat(20_000n);
    // The amount alone: it no longer matches the payment it claims.
    expect(errorName(() => payeeCh.check({ ...update, paidMsat: more }, at))).toBe("InvalidAmountError");
    // Amount and claimed payment, same transaction: not the commitment of that state.
    expect(errorName(() => payeeCh.check({ ...update, paidMsat: more, amountMsat: more }, at))).toBe(
      "MalformedCommitmentError",
    );
    // The commitment rebuilt for the larger amount, the old signature: it does not verify.
    const forged = commitmentTx(params, { sequence: 1, paidMsat: more }).toBuffer();
    expect(errorName(() => payeeCh.check({ ...update, paidMsat: more, amountMsat: more, tx: forged }, at))).toBe(
      "BadSignatureError",
    );
    // One msat more: only the lock time/sequence encoding differs, and still the signature fails.
    const oneMore = msat(10_001n);
    const tx = commitmentTx(params, { sequence: 1, paidMsat: oneMore }).toBuffer();
    expect(errorName(() => payeeCh.check({ ...update, paidMsat: oneMore, amountMsat: oneMore, tx }, at))).toBe(
      "BadSignatureError",
    );
    expect(accept(payeeCh, update)).toBe(msat(10_000n));
  });

  test("a signature by another key is refused", () => {
    const { params, payeeCh } = pair();
    const stranger = ecpair().makeRandom();
    const paidMsat = msat(5_000n);
    const tx = commitmentTx(params, { sequence: 1, paidMsat });
    const update = {
      channelId: params.id,
      sequence: 1,
      paidMsat,
      amountMsat: paidMsat,
      tx: tx.toBuffer(),
      signature: signInput(tx, params, stranger),
      memo: "",
    };
    expect(errorName(() => payeeCh.check(update, at))).toBe("BadSignatureError");
    expect(errorName(() => payeeCh.check({ ...update, signature: new Uint8Array([0x30, 1, 2]) }, at))).toBe(
      "BadSignatureError",
    );
    // The payee's own key is not the payer's either.
    expect(errorName(() => payeeCh.check({ ...update, signature: signInput(tx, params, pair().payee) }, at))).toBe(
      "BadSignatureError",
    );
  });

  test("amounts over the capacity, not increasing or not what was due are refused", () => {
    const { payerCh, payeeCh, params } = pair();
    const payable = (params.capacitySats - params.feeSats) * 1_000n;
    expect(errorName(() => payerCh.update(msat(payable + 1n)))).toBe("InvalidAmountError");
    expect(errorName(() => payerCh.update(msat(0n)))).toBe("InvalidAmountError");
    const update = payerCh.update(msat(1_000n));
    expect(errorName(() => payeeCh.check({ ...update, paidMsat: msat(0n) }, at))).toBe("InvalidAmountError");
    expect(errorName(() => payeeCh.check({ ...update, paidMsat: msat(payable + 1n) }, at))).toBe("InvalidAmountError");
    expect(errorName(() => payeeCh.check(update, { ...at, expectedMsat: msat(2_000n) }))).toBe("InvalidAmountError");
    // The whole capacity less the fee is payable, to the msat; the payer's dust output is left out.
    accept(payeeCh, update);
    expect(accept(payeeCh, payerCh.update(msat(payable - 2_000n)))).toBe(msat(payable - 2_000n));
    const last = payerCh.update(msat(1_000n));
    expect(errorName(() => payerCh.update(msat(1n)))).toBe("InvalidAmountError");
    accept(payeeCh, last);
    const close = payeeCh.closeUnilaterally();
    expect(close.outs.map((o) => o.value)).toEqual([params.capacitySats - params.feeSats]);
  });

  test("malformed commitments are refused with what differs", () => {
    const { payerCh, payeeCh, params } = pair();
    const update = payerCh.update(msat(3_000n));
    const bad = (tx: Uint8Array) => {
      try {
        payeeCh.check({ ...update, tx }, at);
      } catch (err) {
        return `${(err as Error).name}: ${(err as Error).message}`;
      }
      return "accepted";
    };
    expect(bad(new Uint8Array([1, 2, 3]))).toMatch(/MalformedCommitmentError: .*not a transaction/);
    const other = Transaction.fromBuffer(update.tx);
    other.ins[0]!.index = 7;
    expect(bad(other.toBuffer())).toMatch(/not the funding output/);
    const extra = Transaction.fromBuffer(update.tx);
    extra.addOutput(extra.outs[0]!.script, 1_000n);
    expect(bad(extra.toBuffer())).toMatch(/outputs/);
    const moved = Transaction.fromBuffer(update.tx);
    moved.outs[0]!.value -= 1n;
    expect(bad(moved.toBuffer())).toMatch(/output 0/);
    expect(accept(payeeCh, update)).toBe(msat(3_000n));
    expect(params.id).toContain(":0");
  });

  test("an update for another channel is refused as unknown", () => {
    const a = pair();
    const b = pair();
    expect(errorName(() => a.payeeCh.check(b.payerCh.update(msat(1_000n)), at))).toBe("UnknownChannelError");
  });

  test("no payment counts from mustCloseBy; the payee can still close", () => {
    const { payerCh, payeeCh, params } = pair();
    expect(payeeCh.mustCloseBy).toBe(mustCloseBy(params.refundHeight));
    accept(payeeCh, payerCh.update(msat(400_000n)));
    const late = payerCh.update(msat(1_000n));
    expect(errorName(() => payeeCh.check(late, { height: payeeCh.mustCloseBy }))).toBe("ChannelExpiredError");
    const close = payeeCh.closeUnilaterally();
    expect(close.outs[0]!.value).toBe(400n);
    expect(errorName(() => payeeCh.check(late, at))).toBe("ChannelClosedError");
  });

  test("a cooperative close pays the latest state; then the channel takes nothing more", () => {
    const { payerCh, payeeCh } = pair();
    accept(payeeCh, payerCh.update(msat(2_500_000n)));
    payerCh.acknowledged(1);
    const proposal = payerCh.proposeClose(200n);
    const signed = payeeCh.signClose({ tx: proposal.tx.toBuffer(), signature: proposal.signature, feeSats: 200n });
    const full = payerCh.completeClose(proposal.tx, proposal.signature, signed.signature);
    expect(full.toHex()).toBe(signed.tx.toHex());
    expect(full.outs.map((o) => o.value)).toEqual([2_500n, 500_000n - 2_500n - 200n]);
    expect(errorName(() => payeeCh.check(payerCh.update(msat(1_000n)), at))).toBe("ChannelClosedError");
  });

  test("a close that underpays the payee is refused", () => {
    const { payerCh, payeeCh } = pair();
    accept(payeeCh, payerCh.update(msat(250_000n)));
    // The payer proposes from an older state (nothing acknowledged yet).
    const proposal = payerCh.proposeClose(200n);
    expect(
      errorName(() => payeeCh.signClose({ tx: proposal.tx.toBuffer(), signature: proposal.signature, feeSats: 200n })),
    ).toBe("MalformedCommitmentError");
  });

  test("a batch is accepted up to the first refused update; the newest valid signature covers the run", () => {
    const { payerCh, payeeCh, params } = pair();
    const updates = [1, 2, 3, 4].map(() => payerCh.update(msat(1_000n)));
    const [u1, u2, u3, u4] = updates as [ChannelUpdate, ChannelUpdate, ChannelUpdate, ChannelUpdate];
    const stranger = ecpair().makeRandom();
    const forged = { ...u3, signature: signInput(Transaction.fromBuffer(u3.tx), params, stranger) };
    // The newest state's signature is bad: each is checked, the run stops before u3.
    const bad = payeeCh.checkBatch([u1, u2, forged], at);
    expect(bad.accepted.map((a) => a.state.sequence)).toEqual([1, 2]);
    expect(bad.refusal?.name).toBe("BadSignatureError");
    // A structural refusal in the middle: the run before it stands.
    const gap = payeeCh.checkBatch([u1, u2, u4], at);
    expect(gap.accepted.map((a) => a.increase)).toEqual([msat(1_000n), msat(1_000n)]);
    expect(gap.refusal?.name).toBe("SequenceGapError");
    // All valid: accepted, and applying the newest makes it the state to close with.
    const all = payeeCh.checkBatch(updates, at);
    expect(all.refusal).toBeUndefined();
    payeeCh.apply(all.accepted.at(-1)!.state);
    expect(payeeCh.state).toMatchObject({ sequence: 4, paidMsat: msat(4_000n) });
    // The payee's 4 sats are dust: left out (to the fee), the payer's change alone remains.
    expect(payeeCh.closeUnilaterally().outs.map((o) => o.value)).toEqual([500_000n - 300n - 4n]);
  });

  test("the payer adopts the payee's state after a lost acknowledgement, only if it signed it", () => {
    const { payerCh, payeeCh } = pair();
    accept(payeeCh, payerCh.update(msat(1_000n)));
    payerCh.acknowledged(1);
    accept(payeeCh, payerCh.update(msat(2_000n)));
    payerCh.update(msat(4_000n)); // never arrives
    expect(errorName(() => payerCh.adopt({ ...payeeCh.state, paidMsat: msat(9_000n) }))).toBe("BadSignatureError");
    payerCh.adopt(payeeCh.state);
    expect(payerCh.latest.sequence).toBe(2);
    expect(accept(payeeCh, payerCh.update(msat(5_000n)))).toBe(msat(5_000n));
    expect(payeeCh.state.paidMsat).toBe(msat(8_000n));
  });
});

describe("opening terms", () => {
  const policy = { network: "regtest" as const, height: TEST_HEIGHT, maxCapacitySats: 1_000_000n, maxFeeSats: 10_000n };

  test("acceptable terms pass; each bad one is refused", () => {
    const { params, funding } = testChannel();
    expect(() => checkTerms(params, policy)).not.toThrow();
    for (const bad of [
      { network: "mainnet" as const },
      { capacitySats: 2_000_000n },
      { feeSats: 10n },
      { refundHeight: TEST_HEIGHT + 200 },
      { payerKey: new Uint8Array(33) },
    ]) {
      expect(errorName(() => checkTerms({ ...params, ...bad }, policy))).toBe("ChannelRefusedError");
    }
    expect(checkFunding(funding.tx.toBuffer(), 0, params)).toBe(params.fundingTxid);
    expect(errorName(() => checkFunding(funding.tx.toBuffer(), 1, params))).toBe("MalformedCommitmentError");
    expect(errorName(() => checkFunding(funding.tx.toBuffer(), 0, { ...params, capacitySats: 1n }))).toBe(
      "MalformedCommitmentError",
    );
  });
});
