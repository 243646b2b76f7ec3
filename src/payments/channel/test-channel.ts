import type { ECPairInterface } from "ecpair";
import { type ChannelParams, channelId } from "./channel.ts";
import { ecpair } from "./keys.ts";
import { p2wpkhOutput } from "./script.ts";
import { buildFunding, type FundingTx } from "./transactions.ts";

/**
 * Test support: a channel funded from a made-up P2WPKH coin (txid 11..11:1) of a fresh wallet key,
 * with fresh payer and payee keys. Everything is real bitcoinjs signing; only the coin is invented.
 */
export const TEST_CAPACITY_SATS = 500_000n;
export const TEST_FEE_SATS = 300n;
export const TEST_REFUND_HEIGHT = 1_000;
/** A chain height well before the refund height. */
export const TEST_HEIGHT = 100;
/** A median time past for the verifier (2023-11-14). */
export const TEST_MEDIAN_TIME = 1_700_000_000;
export const TEST_COIN_SATS = 1_000_000n;

export interface TestChannel {
  payer: ECPairInterface;
  payee: ECPairInterface;
  wallet: ECPairInterface;
  funding: FundingTx;
  params: ChannelParams;
}

export function testChannel(options: { refundHeight?: number; capacitySats?: bigint } = {}): TestChannel {
  const payer = ecpair().makeRandom();
  const payee = ecpair().makeRandom();
  const wallet = ecpair().makeRandom();
  const capacitySats = options.capacitySats ?? TEST_CAPACITY_SATS;
  const terms = {
    payerKey: payer.publicKey,
    payeeKey: payee.publicKey,
    refundHeight: options.refundHeight ?? TEST_REFUND_HEIGHT,
  };
  const funding = buildFunding({
    utxos: [{ txid: "11".repeat(32), vout: 1, valueSats: TEST_COIN_SATS, signer: wallet }],
    terms,
    capacitySats,
    feeSats: 500n,
    changeOutput: p2wpkhOutput(wallet.publicKey),
  });
  const params: ChannelParams = {
    ...terms,
    id: channelId(funding.txid, funding.vout),
    network: "regtest",
    fundingTxid: funding.txid,
    fundingVout: funding.vout,
    capacitySats,
    feeSats: TEST_FEE_SATS,
  };
  return { payer, payee, wallet, funding, params };
}
