import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Transaction } from "bitcoinjs-lib";
import type { ECPairInterface } from "ecpair";
import { msat } from "../amount.ts";
import { PayeeChannel, PayerChannel } from "./channel.ts";
import { ecpair } from "./keys.ts";
import { fundingScript, p2wpkhOutput } from "./script.ts";
import { TEST_COIN_SATS, TEST_HEIGHT, TEST_MEDIAN_TIME, TEST_REFUND_HEIGHT, testChannel } from "./test-channel.ts";
import {
  commitmentTx,
  completed,
  fundingOutput,
  refundTx,
  SEQUENCE_FINAL,
  signInput,
  TX_VERSION,
  txidBytes,
} from "./transactions.ts";

/**
 * Every transaction the channels produce, judged by python-bitcoinlib's interpreter (Debian's
 * /usr/bin/python3) through test/fixtures/verify_tx.py, which adds the consensus checks the library
 * lacks (witness v0 dispatch, BIP65 CLTV, IsFinalTx...; see its header). Without the library the
 * tests skip, unless INFERNET_REQUIRE_BITCOINLIB=1 (CI), where they fail.
 */
const PYTHON = "/usr/bin/python3";
const SCRIPT = join(import.meta.dir, "../../../test/fixtures/verify_tx.py");
const available = Bun.spawnSync([PYTHON, "-c", "import bitcoin.core.scripteval"], { stderr: "ignore" }).exitCode === 0;
const required = process.env.INFERNET_REQUIRE_BITCOINLIB === "1";
if (!available && !required) {
  console.warn(
    `skipping the script interpreter tests: ${PYTHON} has no python3-bitcoinlib (apt install python3-bitcoinlib)`,
  );
}

interface Verdict {
  inputs: { ok: boolean; error: string | null }[];
  tx: { ok: boolean; error: string | null; fee: number | null };
}

interface Judged {
  tx: Transaction;
  prevouts: { script: Uint8Array; sats: bigint }[];
  /** Chain tip height; the transaction is judged for the next block. */
  height?: number;
}

/** One python process judges them all (a process costs ~50 ms). */
function judge(cases: Judged[]): Verdict[] {
  const request = cases.map((c) => ({
    tx: c.tx.toHex(),
    prevouts: c.prevouts.map((p) => ({ scriptPubKey: Buffer.from(p.script).toString("hex"), amount: Number(p.sats) })),
    height: c.height ?? TEST_HEIGHT,
    medianTime: TEST_MEDIAN_TIME,
  }));
  const run = Bun.spawnSync([PYTHON, SCRIPT], { stdin: Buffer.from(JSON.stringify(request)) });
  if (run.exitCode !== 0) throw new Error(`verify_tx.py failed: ${run.stderr.toString()}`);
  return JSON.parse(run.stdout.toString()) as Verdict[];
}

const valid = (v: Verdict | undefined) => Boolean(v?.tx.ok && v.inputs.length > 0 && v.inputs.every((i) => i.ok));
const why = (v: Verdict | undefined) =>
  [v?.tx.error, ...(v?.inputs.map((i) => i.error) ?? [])].filter(Boolean).join("; ");

describe.skipIf(!available && !required)("channel transactions under python-bitcoinlib", () => {
  test("the library is there (INFERNET_REQUIRE_BITCOINLIB=1 demands it)", () => {
    expect(available).toBe(true);
  });

  test("funding, commitments, both closes and the refund are valid; every forgery is not", () => {
    const { payer, payee, wallet, funding, params } = testChannel();
    const fundingPrevout = [{ script: fundingOutput(params), sats: params.capacitySats }];
    const payerCh = new PayerChannel(params, payer);
    const payeeCh = new PayeeChannel(params, payee);
    const commitments: Judged[] = [];
    for (const amount of [1_234_567n, 999n, 300_000_001n]) {
      const update = payerCh.update(msat(amount), "job");
      const { state } = payeeCh.check(update, { height: TEST_HEIGHT });
      payeeCh.apply(state);
      payerCh.acknowledged(state.sequence);
      // Each commitment as the payee would close with it, at that point.
      commitments.push({ tx: new PayeeChannel(params, payee, state).closeUnilaterally(), prevouts: fundingPrevout });
    }
    const latest = Transaction.fromBuffer(payeeCh.state.tx);
    const payerOnly = latest.clone();
    payerOnly.setWitness(0, [
      new Uint8Array(0),
      payeeCh.state.signature,
      new Uint8Array(0),
      new Uint8Array([1]),
      fundingScript(params),
    ]);
    const unilateral = payeeCh.closeUnilaterally();
    const tampered = unilateral.clone();
    tampered.outs[0]!.value += 1n;
    const stranger = ecpair().makeRandom();
    const wrongKey = completed(params, latest, signInput(latest, params, stranger), signInput(latest, params, payee));

    const closing = new PayerChannel(params, payer, payerCh.acked);
    const proposal = closing.proposeClose(250n);
    const signed = new PayeeChannel(params, payee, payeeCh.state).signClose({
      tx: proposal.tx.toBuffer(),
      signature: proposal.signature,
      feeSats: 250n,
    });
    const cooperative = closing.completeClose(proposal.tx, proposal.signature, signed.signature);

    const refund = refundTx(params, p2wpkhOutput(payer.publicKey), 300n, payer);
    const refundByPayee = refundTx(params, p2wpkhOutput(payer.publicKey), 300n, payee);
    // Hand-made refunds that break BIP65 on purpose, correctly signed: CLTV itself must refuse them.
    const early = badRefund(params, payer, TEST_REFUND_HEIGHT - 1, 0xfffffffe);
    const finalSequence = badRefund(params, payer, TEST_REFUND_HEIGHT, SEQUENCE_FINAL);

    const at = TEST_REFUND_HEIGHT;
    const v = judge([
      { tx: funding.tx, prevouts: [{ script: p2wpkhOutput(wallet.publicKey), sats: TEST_COIN_SATS }] },
      ...commitments,
      { tx: unilateral, prevouts: fundingPrevout },
      { tx: cooperative, prevouts: fundingPrevout },
      { tx: refund, prevouts: fundingPrevout, height: at },
      { tx: refund, prevouts: fundingPrevout, height: at - 1 },
      { tx: tampered, prevouts: fundingPrevout },
      { tx: wrongKey, prevouts: fundingPrevout },
      { tx: payerOnly, prevouts: fundingPrevout },
      { tx: refundByPayee, prevouts: fundingPrevout, height: at },
      { tx: early, prevouts: fundingPrevout, height: at + 10 },
      { tx: finalSequence, prevouts: fundingPrevout, height: at + 10 },
      // The funding spend judged against a wrong amount: BIP143 signs the amount.
      { tx: funding.tx, prevouts: [{ script: p2wpkhOutput(wallet.publicKey), sats: TEST_COIN_SATS + 1n }] },
    ]);
    const [
      fund,
      c1,
      c2,
      c3,
      uni,
      coop,
      refundOk,
      refundEarly,
      tamper,
      wrong,
      half,
      refundWrong,
      cltvLow,
      cltvFinal,
      amount,
    ] = v;
    for (const [name, verdict] of Object.entries({ fund, c1, c2, c3, uni, coop, refundOk })) {
      expect(valid(verdict), `${name}: ${why(verdict)}`).toBe(true);
    }
    expect(fund?.tx.fee).toBe(500);
    expect(uni?.tx.fee).toBe(Number(params.feeSats));
    expect(coop?.tx.fee).toBe(250);
    expect(refundEarly?.inputs[0]?.ok).toBe(true);
    expect(refundEarly?.tx.error).toMatch(/not final/);
    for (const [name, verdict] of Object.entries({ tamper, wrong, half, refundWrong, amount })) {
      expect(valid(verdict), `${name} must be invalid`).toBe(false);
      expect(verdict?.inputs[0]?.ok, name).toBe(false);
    }
    expect(cltvLow?.tx.ok).toBe(true);
    expect(cltvLow?.inputs[0]?.error).toMatch(/CHECKLOCKTIMEVERIFY: nLockTime 999 is below the script's 1000/);
    expect(cltvFinal?.inputs[0]?.error).toMatch(/CHECKLOCKTIMEVERIFY: the input's nSequence is final/);
  });

  test("a garbage witness for the P2WSH output is refused (the library alone would pass it)", () => {
    const { params } = testChannel();
    const tx = commitmentTx(params, { sequence: 1, paidMsat: msat(1_000_000n) });
    tx.setWitness(0, [new Uint8Array([1]), fundingScript(params)]);
    const noScript = tx.clone();
    noScript.setWitness(0, [new Uint8Array([1])]);
    const [garbage, wrongScript] = judge([
      { tx, prevouts: [{ script: fundingOutput(params), sats: params.capacitySats }] },
      { tx: noScript, prevouts: [{ script: fundingOutput(params), sats: params.capacitySats }] },
    ]);
    expect(garbage?.inputs[0]?.ok).toBe(false);
    expect(wrongScript?.inputs[0]?.error).toMatch(/does not hash to the P2WSH program/);
  });
});

describe.skipIf(available || !required)("python-bitcoinlib is required here", () => {
  test("INFERNET_REQUIRE_BITCOINLIB=1 but /usr/bin/python3 cannot import bitcoin.core.scripteval", () => {
    expect(available, "install python3-bitcoinlib for /usr/bin/python3").toBe(true);
  });
});

/** A refund spending the ELSE branch with the given lock time and sequence, signed by `payer`. */
function badRefund(
  params: ReturnType<typeof testChannel>["params"],
  payer: ECPairInterface,
  locktime: number,
  sequence: number,
): Transaction {
  const tx = new Transaction();
  tx.version = TX_VERSION;
  tx.locktime = locktime;
  tx.addInput(txidBytes(params.fundingTxid), params.fundingVout, sequence);
  tx.addOutput(p2wpkhOutput(payer.publicKey), params.capacitySats - 300n);
  tx.setWitness(0, [signInput(tx, params, payer), new Uint8Array(0), fundingScript(params)]);
  return tx;
}
