import { Transaction } from "bitcoinjs-lib";
import {
  type ChannelParams,
  MIN_CAPACITY_SATS,
  MIN_COMMITMENT_FEE_SATS,
  MIN_USEFUL_BLOCKS,
  mustCloseBy,
} from "./channel.ts";
import { ChannelRefusedError, MalformedCommitmentError } from "./errors.ts";
import { type ChannelNetwork, checkPublicKey, checkRefundHeight, equalBytes } from "./script.ts";
import { DUST_LIMIT_SATS, fundingOutput } from "./transactions.ts";

/** The payee's checks when a channel opens: the proposed terms, then the funding transaction. */

/** What a payee accepts when a channel is proposed. */
export interface OpenPolicy {
  network: ChannelNetwork;
  height: number;
  maxCapacitySats: bigint;
  maxFeeSats: bigint;
}

/** The payee's check of proposed terms (before it hands out its key's signature on anything). */
export function checkTerms(
  terms: Omit<ChannelParams, "id" | "fundingTxid" | "fundingVout" | "payeeKey">,
  policy: OpenPolicy,
): void {
  const refuse = (why: string) => new ChannelRefusedError(`channel refused: ${why}`);
  if (terms.network !== policy.network) throw refuse(`this node is on ${policy.network}, not ${terms.network}`);
  try {
    checkPublicKey(terms.payerKey, "the payer key");
    checkRefundHeight(terms.refundHeight);
  } catch (err) {
    throw refuse((err as Error).message);
  }
  if (terms.capacitySats < MIN_CAPACITY_SATS || terms.capacitySats > policy.maxCapacitySats) {
    throw refuse(`capacity ${terms.capacitySats} sats is outside ${MIN_CAPACITY_SATS} to ${policy.maxCapacitySats}`);
  }
  if (terms.feeSats < MIN_COMMITMENT_FEE_SATS || terms.feeSats > policy.maxFeeSats) {
    throw refuse(`fee ${terms.feeSats} sats is outside ${MIN_COMMITMENT_FEE_SATS} to ${policy.maxFeeSats}`);
  }
  if (terms.capacitySats - terms.feeSats < 2n * DUST_LIMIT_SATS) throw refuse("the fee leaves nothing to pay");
  if (mustCloseBy(terms.refundHeight) - policy.height < MIN_USEFUL_BLOCKS) {
    throw refuse(`refund height ${terms.refundHeight} leaves under ${MIN_USEFUL_BLOCKS} blocks before it must close`);
  }
}

/** Checks the funding transaction pays `terms.capacitySats` to the funding script at `vout`; returns its txid. */
export function checkFunding(
  bytes: Uint8Array,
  vout: number,
  terms: Omit<ChannelParams, "id" | "fundingTxid" | "fundingVout">,
): string {
  let tx: Transaction;
  try {
    tx = Transaction.fromBuffer(bytes);
  } catch (cause) {
    throw new MalformedCommitmentError("the funding transaction does not parse", { cause });
  }
  const out = tx.outs[vout];
  if (!out || !equalBytes(out.script, fundingOutput(terms)) || out.value !== terms.capacitySats) {
    throw new MalformedCommitmentError(
      `output ${vout} of the funding transaction is not ${terms.capacitySats} sats to the channel script`,
    );
  }
  return tx.getId();
}
