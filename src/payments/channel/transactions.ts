import * as ecc from "@bitcoinerlab/secp256k1";
import { script, Transaction } from "bitcoinjs-lib";
import { InvalidInputError } from "../../util/errors.ts";
import { MSAT_PER_SAT, type Msat, toSatsFloor } from "../amount.ts";
import { BadSignatureError, MalformedCommitmentError } from "./errors.ts";
import type { Signer } from "./keys.ts";
import { equalBytes, type FundingTerms, fundingScript, p2wpkhOutput, p2wpkhScriptCode, p2wshOutput } from "./script.ts";

/**
 * The channel's transactions, built with bitcoinjs-lib (amounts are bigint sats) and signed with
 * SIGHASH_ALL over the BIP143 digest: the funding transaction (P2WPKH inputs to the P2WSH funding
 * output), commitments (each payment; the payee completes the latest to close alone), the cooperative
 * close (both sign, any fee they agree) and the refund (the payer alone, from the refund height).
 */

/**
 * Outputs below this are left out (their value goes to the fee): Bitcoin Core's dust threshold for a
 * P2WPKH output at the default dustrelayfee of 3 sat/vB, (31 + 67) * 3 = 294 sats. Relay refuses
 * transactions with a smaller output.
 */
export const DUST_LIMIT_SATS = 294n;
/** Version 2 like Bitcoin Core's wallet; BIP68 applies only where an input's disable bit is clear. */
export const TX_VERSION = 2;
export const SIGHASH_ALL = Transaction.SIGHASH_ALL;
/** nSequence that enables nLockTime (IsFinalTx) and disables BIP68's relative lock (bit 31 set). */
export const SEQUENCE_LOCKTIME_ENABLED = 0xfffffffe;
export const SEQUENCE_FINAL = 0xffffffff;

/**
 * A commitment carries its state in nLockTime and nSequence, as BOLT 3 hides the commitment number:
 * nLockTime = 0x20 << 24 | upper 24 bits (a Unix time in 1987, always final), nSequence = 0x80 << 24
 * | lower 24 bits (bit 31 set: BIP68 does not apply). The 48 bits hold sequence * 1024 + (paid msat
 * mod 1000). So the payer's one BIP143 signature covers the channel (the funding outpoint), the
 * sequence and the exact msat paid: the payee needs no second, off-chain signature for msat
 * granularity (that would double the signing and verifying work per payment).
 */
const LOCKTIME_TAG = 0x20 << 24;
const SEQUENCE_TAG = 0x80000000;
const LOW_BITS = 2 ** 24;
const REMAINDER_FACTOR = 1024;
/** Highest state sequence the 48 bits carry (2^38 - 1: some 270 billion payments per channel). */
export const MAX_STATE_SEQUENCE = 2 ** 38 - 1;

export interface Utxo {
  /** Txid (hex, as explorers show it) and output index of a P2WPKH output paying `signer.publicKey`. */
  txid: string;
  vout: number;
  valueSats: bigint;
  signer: Signer;
}

/** What the commitment and close transactions need: the funding output and who is who. */
export interface ChannelTerms extends FundingTerms {
  fundingTxid: string;
  fundingVout: number;
  capacitySats: bigint;
  /** Fee of every commitment, agreed when the channel opens. */
  feeSats: bigint;
}

/**
 * Scripts a channel's every transaction uses, computed once per terms object (checking a public key
 * decompresses the point: ~0.1 ms each, several times per commitment otherwise). Terms are treated as
 * immutable once made.
 */
interface Derived {
  witnessScript: Uint8Array;
  payeeOutput: Uint8Array;
  payerOutput: Uint8Array;
  fundingHash: Uint8Array;
}
const derivedByTerms = new WeakMap<ChannelTerms, Derived>();

function derived(terms: ChannelTerms): Derived {
  let d = derivedByTerms.get(terms);
  if (!d) {
    d = {
      witnessScript: fundingScript(terms),
      payeeOutput: p2wpkhOutput(terms.payeeKey),
      payerOutput: p2wpkhOutput(terms.payerKey),
      fundingHash: txidBytes(terms.fundingTxid),
    };
    derivedByTerms.set(terms, d);
  }
  return d;
}

export interface ChannelState {
  sequence: number;
  paidMsat: Msat;
}

export interface FundingTx {
  tx: Transaction;
  txid: string;
  vout: number;
  witnessScript: Uint8Array;
}

/** Spends P2WPKH `utxos` into the funding output (vout 0) and change (dropped below dust, to the fee). */
export function buildFunding(options: {
  utxos: Utxo[];
  terms: FundingTerms;
  capacitySats: bigint;
  feeSats: bigint;
  changeOutput: Uint8Array;
}): FundingTx {
  const { utxos, capacitySats, feeSats } = options;
  if (utxos.length === 0) throw new InvalidInputError("the funding transaction needs at least one input");
  checkSats(capacitySats, "the capacity");
  checkSats(feeSats, "the funding fee");
  const total = utxos.reduce((n, u) => n + checkSats(u.valueSats, "an input"), 0n);
  const change = total - capacitySats - feeSats;
  if (change < 0n) {
    throw new InvalidInputError(`the inputs hold ${total} sats; the channel needs ${capacitySats + feeSats}`);
  }
  const witnessScript = fundingScript(options.terms);
  const tx = new Transaction();
  tx.version = TX_VERSION;
  for (const u of utxos) tx.addInput(txidBytes(u.txid), u.vout, SEQUENCE_FINAL);
  tx.addOutput(p2wshOutput(witnessScript), capacitySats);
  if (change >= DUST_LIMIT_SATS) tx.addOutput(options.changeOutput, change);
  utxos.forEach((u, i) => {
    const hash = tx.hashForWitnessV0(i, p2wpkhScriptCode(u.signer.publicKey), u.valueSats, SIGHASH_ALL);
    tx.setWitness(i, [encodeSignature(u.signer.sign(hash)), u.signer.publicKey]);
  });
  return { tx, txid: tx.getId(), vout: 0, witnessScript };
}

/** The funding output's scriptPubKey for `terms`: what the payee looks for in the funding transaction. */
export function fundingOutput(terms: FundingTerms): Uint8Array {
  return p2wshOutput(fundingScript(terms));
}

/** Most a channel can pay: its capacity less the commitment fee, in msat. */
export function payableMsat(terms: ChannelTerms): bigint {
  return (terms.capacitySats - terms.feeSats) * MSAT_PER_SAT;
}

/**
 * The unsigned commitment for `state`: spends the funding outpoint, pays the payee floor(paid/1000)
 * sats and the payer the rest less the fee, each to P2WPKH of its channel key, dust left out.
 */
export function commitmentTx(terms: ChannelTerms, state: ChannelState): Transaction {
  if (!Number.isInteger(state.sequence) || state.sequence < 1 || state.sequence > MAX_STATE_SEQUENCE) {
    throw new InvalidInputError(`a commitment sequence must be 1 to ${MAX_STATE_SEQUENCE}, got ${state.sequence}`);
  }
  const packed = state.sequence * REMAINDER_FACTOR + Number(state.paidMsat % MSAT_PER_SAT);
  const locktime = LOCKTIME_TAG + Math.floor(packed / LOW_BITS);
  const sequence = SEQUENCE_TAG + (packed % LOW_BITS);
  return settlementTx(terms, toSatsFloor(state.paidMsat), terms.feeSats, locktime, sequence);
}

/** The cooperative close: the same split as the latest state, with the fee both sides agree now. */
export function closeTx(terms: ChannelTerms, paidMsat: Msat, feeSats: bigint): Transaction {
  return settlementTx(terms, toSatsFloor(paidMsat), feeSats, 0, SEQUENCE_FINAL);
}

function settlementTx(terms: ChannelTerms, paidSats: bigint, feeSats: bigint, locktime: number, sequence: number) {
  checkSats(feeSats, "the fee");
  const payerSats = terms.capacitySats - feeSats - paidSats;
  if (payerSats < 0n) {
    throw new InvalidInputError(`paying ${paidSats} sats and a ${feeSats} sat fee exceeds ${terms.capacitySats} sats`);
  }
  const scripts = derived(terms);
  const tx = new Transaction();
  tx.version = TX_VERSION;
  tx.locktime = locktime;
  tx.addInput(scripts.fundingHash, terms.fundingVout, sequence);
  if (paidSats >= DUST_LIMIT_SATS) tx.addOutput(scripts.payeeOutput, paidSats);
  if (payerSats >= DUST_LIMIT_SATS) tx.addOutput(scripts.payerOutput, payerSats);
  return tx;
}

/** The refund: the funding output back to `output` via the ELSE branch, valid from the refund height (BIP65). */
export function refundTx(terms: ChannelTerms, output: Uint8Array, feeSats: bigint, payer: Signer): Transaction {
  checkSats(feeSats, "the refund fee");
  if (terms.capacitySats - feeSats < DUST_LIMIT_SATS) throw new InvalidInputError("the refund would be dust");
  const tx = new Transaction();
  tx.version = TX_VERSION;
  // IsFinalTx compares nLockTime with the chain; CLTV compares the script's height with nLockTime and
  // fails on a final nSequence (BIP65), hence SEQUENCE_LOCKTIME_ENABLED.
  tx.locktime = terms.refundHeight;
  tx.addInput(derived(terms).fundingHash, terms.fundingVout, SEQUENCE_LOCKTIME_ENABLED);
  tx.addOutput(output, terms.capacitySats - feeSats);
  const signature = signInput(tx, terms, payer);
  // <sig> <empty: OP_IF takes the ELSE branch> <witnessScript>; an empty vector is MINIMALIF's false.
  tx.setWitness(0, [signature, new Uint8Array(0), derived(terms).witnessScript]);
  return tx;
}

/** The BIP143 digest a funding-output spend signs (SIGHASH_ALL; the amount is the capacity). */
export function sighash(tx: Transaction, terms: ChannelTerms): Uint8Array {
  return tx.hashForWitnessV0(0, derived(terms).witnessScript, terms.capacitySats, SIGHASH_ALL);
}

/** The DER signature plus hashtype byte of `signer` on the funding-output spend `tx`. */
export function signInput(tx: Transaction, terms: ChannelTerms, signer: Signer): Uint8Array {
  return encodeSignature(signer.sign(sighash(tx, terms)));
}

/**
 * Checks `signature` (DER + hashtype, as it goes in the witness) by `publicKey` on `digest`. Strict:
 * BIP66 DER, SIGHASH_ALL only, and a low S (BIP62; relay refuses high-S signatures, so the payee could
 * not broadcast a close built on one).
 */
export function verifySignature(digest: Uint8Array, publicKey: Uint8Array, signature: Uint8Array): void {
  let decoded: { signature: Uint8Array; hashType: number };
  try {
    decoded = script.signature.decode(signature);
  } catch {
    throw new BadSignatureError("the signature is not a DER signature with a hashtype");
  }
  if (decoded.hashType !== SIGHASH_ALL) throw new BadSignatureError(`hashtype ${decoded.hashType} is not SIGHASH_ALL`);
  if (!ecc.verify(digest, uncompressed(publicKey), decoded.signature, true)) {
    throw new BadSignatureError("the signature does not verify for this key and transaction");
  }
}

/**
 * The same key uncompressed, once per key object: verifying against it skips the square root that
 * decompressing costs on every verification (~10% of one).
 */
const uncompressedKeys = new WeakMap<Uint8Array, Uint8Array>();

function uncompressed(publicKey: Uint8Array): Uint8Array {
  let key = uncompressedKeys.get(publicKey);
  if (!key) {
    key = ecc.pointCompress(publicKey, false);
    uncompressedKeys.set(publicKey, key);
  }
  return key;
}

/** The witness of a 2-of-2 spend: OP_CHECKMULTISIG's dummy (BIP147: empty), both signatures, OP_IF's true. */
export function multisigWitness(terms: ChannelTerms, payerSig: Uint8Array, payeeSig: Uint8Array): Uint8Array[] {
  return [new Uint8Array(0), payerSig, payeeSig, new Uint8Array([1]), derived(terms).witnessScript];
}

/** `tx` (a commitment or close) with both signatures in its witness, ready to broadcast. */
export function completed(terms: ChannelTerms, tx: Transaction, payerSig: Uint8Array, payeeSig: Uint8Array) {
  const out = tx.clone();
  out.setWitness(0, multisigWitness(terms, payerSig, payeeSig));
  return out;
}

/**
 * Parses a transaction from a peer and checks it is exactly `expected` (unsigned: no scriptSig, no
 * witness): version, lock time, the one input (the funding outpoint and its nSequence), every output's
 * script and amount. Throws `MalformedCommitmentError` saying what differs.
 */
export function checkSameTx(bytes: Uint8Array, expected: Transaction, what: string): void {
  let tx: Transaction;
  try {
    tx = Transaction.fromBuffer(bytes);
  } catch (cause) {
    throw new MalformedCommitmentError(`the ${what} is not a transaction`, { cause });
  }
  const bad = (why: string) => new MalformedCommitmentError(`the ${what} ${why}`);
  if (tx.version !== expected.version) throw bad(`has version ${tx.version}, expected ${expected.version}`);
  if (tx.ins.length !== 1) throw bad(`has ${tx.ins.length} inputs; it must spend only the funding output`);
  const input = tx.ins[0] as Transaction["ins"][number];
  const want = expected.ins[0] as Transaction["ins"][number];
  if (!equalBytes(input.hash, want.hash) || input.index !== want.index) {
    throw bad(
      `spends ${txidHex(input.hash)}:${input.index}, not the funding output ${txidHex(want.hash)}:${want.index}`,
    );
  }
  if (input.script.length > 0 || input.witness.length > 0)
    throw bad("must be sent unsigned (no scriptSig, no witness)");
  if (input.sequence !== want.sequence || tx.locktime !== expected.locktime) {
    throw bad("does not carry this state's sequence and amount in nSequence and nLockTime");
  }
  if (tx.outs.length !== expected.outs.length)
    throw bad(`has ${tx.outs.length} outputs, expected ${expected.outs.length}`);
  tx.outs.forEach((out, i) => {
    const exp = expected.outs[i] as Transaction["outs"][number];
    if (out.value !== exp.value || !equalBytes(out.script, exp.script)) {
      throw bad(`output ${i} pays ${out.value} sats to another script or amount than the state's ${exp.value} sats`);
    }
  });
}

/** A DER signature with the SIGHASH_ALL byte, from the 64-byte compact form `Signer.sign` returns. */
function encodeSignature(compact: Uint8Array): Uint8Array {
  return script.signature.encode(compact, SIGHASH_ALL);
}

function checkSats(value: bigint, what: string): bigint {
  if (value < 0n) throw new InvalidInputError(`${what} is negative: ${value} sats`);
  if (value > 21_000_000n * 100_000_000n) throw new InvalidInputError(`${what} is more than 21 million bitcoin`);
  return value;
}

/** A txid (hex, display order) as the internal byte order a transaction input carries. */
export function txidBytes(txid: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(txid)) throw new InvalidInputError(`"${txid.slice(0, 80)}" is not a txid`);
  return Uint8Array.from(Buffer.from(txid, "hex").reverse());
}

export function txidHex(hash: Uint8Array): string {
  return Buffer.from(hash).reverse().toString("hex");
}
