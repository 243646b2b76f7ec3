import * as ecc from "@bitcoinerlab/secp256k1";
import { networks as btcNetworks, crypto, type Network, payments, script } from "bitcoinjs-lib";
import { InvalidInputError } from "../../util/errors.ts";

/**
 * The channel's funding output: a P2WSH (BIP141) whose witness script has two branches:
 *
 *   OP_IF
 *     2 <payer> <payee> 2 OP_CHECKMULTISIG                   cooperative: both sign (commitments, close)
 *   OP_ELSE
 *     <refundHeight> OP_CHECKLOCKTIMEVERIFY OP_DROP          BIP65: only once the chain reaches refundHeight
 *     <payer> OP_CHECKSIG                                    the funder alone takes the money back
 *   OP_ENDIF
 *
 * An absolute block height (BIP65) rather than a relative delay (BIP112): the refund time is fixed when
 * the channel is opened, whatever the funding transaction's confirmation height, so both sides can
 * compute the deadline (`mustCloseBy`) without watching the chain for the funding confirmation.
 */

export const CHANNEL_NETWORKS = ["regtest", "signet", "testnet", "mainnet"] as const;
export type ChannelNetwork = (typeof CHANNEL_NETWORKS)[number];

/** bitcoinjs parameters by network name. Signet shares testnet's address prefixes (tb1...). */
const NETWORKS: Record<ChannelNetwork, Network> = {
  regtest: btcNetworks.regtest,
  signet: btcNetworks.testnet,
  testnet: btcNetworks.testnet,
  mainnet: btcNetworks.bitcoin,
};

export const DEFAULT_CHANNEL_NETWORK: ChannelNetwork = "regtest";

export function bitcoinNetwork(name: ChannelNetwork): Network {
  return NETWORKS[name];
}

export function isChannelNetwork(name: string): name is ChannelNetwork {
  return (CHANNEL_NETWORKS as readonly string[]).includes(name);
}

/**
 * nLockTime values below this are block heights, at or above it Unix times (BIP65, Bitcoin Core's
 * LOCKTIME_THRESHOLD). A refund height must be a height.
 */
export const LOCKTIME_THRESHOLD = 500_000_000;

/** A compressed secp256k1 public key: segwit v0 spends with uncompressed keys are non-standard (BIP143). */
export const PUBLIC_KEY_BYTES = 33;

/** The two sides' public keys and the refund height: everything the funding script commits to. */
export interface FundingTerms {
  payerKey: Uint8Array;
  payeeKey: Uint8Array;
  /** Absolute block height from which the payer alone may spend the funding output (BIP65). */
  refundHeight: number;
}

export function checkPublicKey(key: Uint8Array, what: string): void {
  if (key.length !== PUBLIC_KEY_BYTES || !ecc.isPointCompressed(key) || !ecc.isPoint(key)) {
    throw new InvalidInputError(`${what} is not a compressed secp256k1 public key`);
  }
}

export function checkRefundHeight(height: number): void {
  if (!Number.isInteger(height) || height < 1 || height >= LOCKTIME_THRESHOLD) {
    throw new InvalidInputError(
      `the refund height must be a block height 1 to ${LOCKTIME_THRESHOLD - 1}, got ${height}`,
    );
  }
}

/** The witness script of the funding output (see the top of this file). */
export function fundingScript(terms: FundingTerms): Uint8Array {
  checkPublicKey(terms.payerKey, "the payer key");
  checkPublicKey(terms.payeeKey, "the payee key");
  checkRefundHeight(terms.refundHeight);
  if (equalBytes(terms.payerKey, terms.payeeKey)) throw new InvalidInputError("the payer and payee keys are the same");
  const { OPS } = script;
  return script.compile([
    OPS.OP_IF,
    OPS.OP_2,
    terms.payerKey,
    terms.payeeKey,
    OPS.OP_2,
    OPS.OP_CHECKMULTISIG,
    OPS.OP_ELSE,
    script.number.encode(terms.refundHeight),
    OPS.OP_CHECKLOCKTIMEVERIFY,
    OPS.OP_DROP,
    terms.payerKey,
    OPS.OP_CHECKSIG,
    OPS.OP_ENDIF,
  ]);
}

/** The P2WSH scriptPubKey paying to `witnessScript`: OP_0 <sha256(witnessScript)>. */
export function p2wshOutput(witnessScript: Uint8Array): Uint8Array {
  return payments.p2wsh({ redeem: { output: witnessScript } }).output as Uint8Array;
}

/** The P2WPKH scriptPubKey of a compressed key: OP_0 <hash160(key)>, where each side's balance goes. */
export function p2wpkhOutput(publicKey: Uint8Array): Uint8Array {
  checkPublicKey(publicKey, "the key");
  return payments.p2wpkh({ pubkey: publicKey }).output as Uint8Array;
}

/** The address of a scriptPubKey on `network` (for people and wallets). */
export function outputAddress(output: Uint8Array, network: ChannelNetwork): string {
  const net = bitcoinNetwork(network);
  if (output.length === 34) return payments.p2wsh({ output, network: net }).address as string;
  return payments.p2wpkh({ output, network: net }).address as string;
}

/**
 * The BIP143 scriptCode of a P2WPKH input: the P2PKH script of the key's hash160. The witness of a
 * P2WPKH spend is <signature> <publicKey>.
 */
export function p2wpkhScriptCode(publicKey: Uint8Array): Uint8Array {
  return payments.p2pkh({ hash: crypto.hash160(publicKey) }).output as Uint8Array;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
