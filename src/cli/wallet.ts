import { address as btcAddress, networks } from "bitcoinjs-lib";
import { MAX_WALLET_FEE_RATE } from "../config/index.ts";
import { formatMsat, MSAT_PER_SAT, type Msat, msat } from "../payments/amount.ts";
import { bitcoinNetwork } from "../payments/chain/network.ts";
import { ChannelStore } from "../payments/channel/store.ts";
import { ACCOUNT_KINDS, type AccountKind, Ledger } from "../payments/ledger.ts";
import { type PaymentsSetup, paymentsSetup } from "../payments/setup.ts";
import { checkSendAmount } from "../payments/wallet/coin-select.ts";
import type { Store } from "../store/db.ts";
import { AbortedError, InfernetError, InvalidInputError, UsageError } from "../util/errors.ts";
import { numberFlag } from "./args.ts";
import { defineCommand } from "./command.ts";
import { formatTable } from "./table.ts";
import { runChannelAction } from "./wallet-channels.ts";

/** What each kind of ledger account holds, seen from this node as an aggregator. */
const KIND_LABELS: Record<AccountKind, string> = {
  client: "clients' credit",
  escrow: "escrowed for jobs",
  earnings: "providers' earnings",
  bond: "providers' bonds",
  fees: "fees earned",
  forfeits: "forfeited",
  income: "this node's income (paid for its own work)",
  outside: "beyond this node (channels, Lightning)",
};
/** The order the screen lists them: the node's own books first, money beyond it last. */
const KIND_ORDER: AccountKind[] = [...ACCOUNT_KINDS.filter((k) => k !== "outside"), "outside"];

/** The on-chain part of the screen: a balance, no wallet yet, or why the chain could not say. */
export type OnChainView =
  | { state: "ok"; confirmedMsat: Msat; unconfirmedMsat: Msat }
  | { state: "no-wallet" }
  | { state: "unavailable"; error: string };

export interface ChannelView {
  id: string;
  role: "payer" | "payee";
  peer: string;
  network: string;
  status: string;
  capacityMsat: Msat;
  paidMsat: Msat;
  sequence: number;
  refundHeight: number;
}

export interface WalletView {
  network: string;
  walletKey: string;
  onChain: OnChainView;
  channels: ChannelView[];
  ledger: {
    kinds: { kind: AccountKind; accounts: number; totalMsat: bigint }[];
    accounts: { kind: AccountKind; owner: string; balanceMsat: bigint }[];
  };
  penalties: { count: number; amountMsat: bigint; applied: number };
}

export const walletCommand = defineCommand({
  name: "wallet",
  usage: [
    "wallet [--json]",
    "wallet address [--json]",
    "wallet withdraw ADDRESS SATS [--fee-rate N] [--json]",
    "wallet fund SATS --to PEER",
    "wallet pay AMOUNT --to PEER [--memo deposit|bond|earnings|payment]",
    "wallet close CHANNEL",
  ],
  details: `The node's money in one place. \`infernet wallet\` shows the on-chain wallet's balance (read from the
chain: INFERNET_CHAIN_NETWORK, INFERNET_CHAIN_BACKEND, INFERNET_CHAIN_URL), the payment channels in the
node's database and its books: as an aggregator, clients' credit, escrow, providers' earnings and
bonds, fees, forfeits and the penalties recorded; as a provider, its income. Amounts are sats with millisatoshi precision; --json gives each
as a decimal string of msat.
The wallet's seed is INFERNET_HOME/wallet.key (mode 0600), created by the first \`wallet address\`. It is
separate from the node's identity (the libp2p key): back it up, it is the only copy of the coins.
\`wallet withdraw\` signs and broadcasts a send from the on-chain wallet, change back to it, and prints
the txid; the fee rate is --fee-rate, else INFERNET_WALLET_FEE_RATE, else the chain's estimate.
\`wallet fund\`, \`pay\` and \`close\` go through the running node (\`infernet start\`): fund opens a payment
channel to PEER (a peer id, or its multiaddr) with SATS from the on-chain wallet; pay sends over the
open channel to PEER with the most room, its memo saying what the payment is for (deposit: credit
at an aggregator for your jobs; bond: a provider's security deposit); close settles a channel you
pay into cooperatively (CHANNEL: its id, or a unique start of it).
  infernet wallet address
  infernet wallet withdraw bcrt1q... 25000 --fee-rate 2
  infernet wallet fund 100000 --to /ip4/192.0.2.10/udp/7707/quic-v1/p2p/12D3KooW...
  infernet wallet pay 5000sat --to 12D3KooW... --memo deposit`,
  options: {
    json: { type: "boolean", description: "Machine-readable output (amounts as strings of msat)" },
    to: { type: "string", value: "PEER", description: "fund, pay: the peer (its id, or a multiaddr to dial)" },
    memo: { type: "string", value: "WHAT", description: "pay: what the payment is for (deposit, bond, ...)" },
    "fee-rate": {
      type: "string",
      value: "N",
      description: `withdraw: fee rate in sat/vB (1 to ${MAX_WALLET_FEE_RATE})`,
    },
  },
  async run(ctx, { values, positionals }) {
    const [action, ...rest] = positionals;
    if (values["fee-rate"] !== undefined && action !== "withdraw") {
      throw new UsageError("wallet: --fee-rate is for `wallet withdraw`");
    }
    const setup = paymentsSetup(ctx.config());
    if (action === undefined) {
      const view = await walletView(setup, ctx.store(), ctx.signal);
      ctx.stdout.write(values.json ? `${JSON.stringify(view, jsonAmounts)}\n` : formatWallet(view));
      return 0;
    }
    if (action === "address") {
      if (rest.length) throw new UsageError(`wallet address: unexpected argument "${rest[0]}"`);
      const created = !setup.hasWalletKey();
      setup.walletKey();
      if (!values.json) {
        // Said before the chain is asked: the key exists now, whatever the chain answers.
        ctx.stderr.write(
          `${created ? "created the wallet key" : "wallet key"} ${setup.walletKeyPath} (mode 0600, ${setup.network}); ` +
            "it is separate from the node's identity: back it up, it is the only copy of the coins\n",
        );
      }
      const address = await setup.wallet().receiveAddress(ctx.signal);
      ctx.stdout.write(
        values.json
          ? `${JSON.stringify({ address, network: setup.network, walletKey: setup.walletKeyPath, created })}\n`
          : `${address}\n`,
      );
      return 0;
    }
    if (action === "withdraw") {
      const [to, amountText, extra] = rest;
      if (to === undefined || amountText === undefined) {
        throw new UsageError("wallet withdraw: give an address and an amount in sats", {
          hint: "infernet wallet withdraw ADDRESS SATS [--fee-rate N]",
        });
      }
      if (extra !== undefined) throw new UsageError(`wallet withdraw: unexpected argument "${extra}"`);
      checkAddress(to.trim(), setup.network);
      const amount = parseSats(amountText);
      const satPerVbyte = numberFlag("wallet withdraw", "fee-rate", values["fee-rate"], 1, MAX_WALLET_FEE_RATE);
      const feeRate = await setup.feeRate({
        ...(satPerVbyte !== undefined ? { satPerVbyte } : {}),
        signal: ctx.signal,
      });
      const sent = await setup.wallet().send(to.trim(), amount, feeRate, ctx.signal);
      if (values.json) {
        const result = {
          txid: sent.txid,
          amountMsat: sent.amount * MSAT_PER_SAT,
          feeMsat: sent.fee * MSAT_PER_SAT,
          vsize: sent.vsize,
          changeMsat: (sent.change?.value ?? 0n) * MSAT_PER_SAT,
        };
        ctx.stdout.write(`${JSON.stringify(result, jsonAmounts)}\n`);
        return 0;
      }
      ctx.stdout.write(`${sent.txid}\n`);
      ctx.stderr.write(
        `sent ${sats(sent.amount)} to ${to.trim()}, fee ${sats(sent.fee)} (${sent.vsize} vB)` +
          `${sent.change ? `, change ${sats(sent.change.value)} to ${sent.change.address}` : ""}\n`,
      );
      return 0;
    }
    const channels = await runChannelAction(ctx, action, rest, {
      ...(values.to !== undefined ? { to: values.to } : {}),
      ...(values.memo !== undefined ? { memo: values.memo } : {}),
      json: Boolean(values.json),
    });
    if (channels !== undefined) return channels;
    throw new UsageError(`wallet: unknown action "${action}"`, {
      hint: "say address, withdraw, fund, pay or close; see `infernet wallet --help`",
    });
  },
});

/** Everything the screen shows. The chain is asked once; when it cannot answer, the rest still shows. */
export async function walletView(setup: PaymentsSetup, store: Store, signal?: AbortSignal): Promise<WalletView> {
  const channels = new ChannelStore(store).list().map(
    (c): ChannelView => ({
      id: c.params.id,
      role: c.role,
      peer: c.peer,
      network: c.params.network,
      status: c.status,
      capacityMsat: msat(c.params.capacitySats * MSAT_PER_SAT, `channel ${c.params.id} capacity`),
      paidMsat: c.state.paidMsat,
      sequence: c.state.sequence,
      refundHeight: c.params.refundHeight,
    }),
  );
  const accounts = new Ledger(store)
    .accounts()
    .map((a) => ({ kind: a.id.kind, owner: a.id.owner, balanceMsat: a.balance }));
  const kinds = KIND_ORDER.map((kind) => {
    const of = accounts.filter((a) => a.kind === kind);
    return { kind, accounts: of.length, totalMsat: of.reduce((sum, a) => sum + a.balanceMsat, 0n) };
  });
  const penalties = store.db
    .query<{ n: bigint; amount: bigint; applied: bigint }, []>(
      `SELECT COUNT(*) AS n, COALESCE(SUM(amount_msat), 0) AS amount, COUNT(applied_at) AS applied FROM penalties`,
    )
    .safeIntegers(true)
    .get() ?? { n: 0n, amount: 0n, applied: 0n };
  return {
    network: setup.network,
    walletKey: setup.walletKeyPath,
    onChain: await onChainView(setup, signal),
    channels,
    ledger: { kinds, accounts },
    penalties: { count: Number(penalties.n), amountMsat: penalties.amount, applied: Number(penalties.applied) },
  };
}

async function onChainView(setup: PaymentsSetup, signal: AbortSignal | undefined): Promise<OnChainView> {
  // Looking never creates a key: that is `wallet address`'s job.
  if (!setup.hasWalletKey()) return { state: "no-wallet" };
  try {
    const balance = await setup.wallet().balance(signal);
    return {
      state: "ok",
      confirmedMsat: msat(balance.confirmed * MSAT_PER_SAT, "confirmed balance"),
      unconfirmedMsat: msat(balance.unconfirmed * MSAT_PER_SAT, "unconfirmed balance"),
    };
  } catch (err) {
    if (err instanceof AbortedError || signal?.aborted || !(err instanceof InfernetError)) throw err;
    return { state: "unavailable", error: `${err.message}${err.hint ? ` (${err.hint})` : ""}` };
  }
}

export function formatWallet(v: WalletView): string {
  const onChain =
    v.onChain.state === "ok"
      ? `${formatMsatSigned(v.onChain.confirmedMsat)} confirmed, ${formatMsatSigned(v.onChain.unconfirmedMsat)} unconfirmed`
      : v.onChain.state === "no-wallet"
        ? "no wallet yet (`infernet wallet address` creates one)"
        : `cannot tell: ${v.onChain.error}`;
  const lines = [`On-chain (${v.network}, key ${v.walletKey}): ${onChain}`, ""];
  if (v.channels.length === 0) lines.push("Channels: none");
  else {
    lines.push("Channels:");
    const head = ["ID", "ROLE", "PEER", "CAPACITY", "PAID", "STATUS", "REFUND HEIGHT"];
    const rows = v.channels.map((c) => [
      shortChannelId(c.id),
      c.role,
      c.peer.length > 16 ? `...${c.peer.slice(-12)}` : c.peer,
      formatMsatSigned(c.capacityMsat),
      formatMsatSigned(c.paidMsat),
      c.status,
      String(c.refundHeight),
    ]);
    lines.push(indent(formatTable(head, rows)));
  }
  lines.push("", "Books (this node's ledger: its accounts as an aggregator, and its own income):");
  const head = ["ACCOUNT", "WHAT", "ACCOUNTS", "TOTAL"];
  const rows = v.ledger.kinds.map((k) => [
    k.kind,
    KIND_LABELS[k.kind],
    String(k.accounts),
    formatMsatSigned(k.totalMsat),
  ]);
  lines.push(indent(formatTable(head, rows)));
  const p = v.penalties;
  lines.push(
    "",
    p.count === 0
      ? "Penalties: none"
      : `Penalties: ${p.count} recorded, ${formatMsatSigned(p.amountMsat)} in all, ${p.applied} applied`,
  );
  return `${lines.join("\n")}\n`;
}

/** txid:vout with the txid cut to 16 hex digits (the full id is in --json). */
function shortChannelId(id: string): string {
  const [txid = "", vout] = id.split(":");
  return txid.length > 16 && vout !== undefined ? `${txid.slice(0, 16)}…:${vout}` : id;
}

/** formatMsat for any bigint: outside accounts go below zero. */
function formatMsatSigned(amount: bigint): string {
  return amount < 0n ? `-${formatMsat(-amount as Msat)}` : formatMsat(amount as Msat);
}

const indent = (text: string) =>
  text
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");

const sats = (value: bigint) => formatMsatSigned(value * MSAT_PER_SAT);

/** JSON.stringify replacer: bigints (every amount) as decimal strings. */
function jsonAmounts(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

/**
 * The networks an address can belong to, for a refusal that says which one it is. Signet and testnet
 * share prefixes (BIP325), so they are named together.
 */
const ADDRESS_NETWORKS = [
  { name: "mainnet", network: networks.bitcoin },
  { name: "testnet or signet", network: networks.testnet },
  { name: "regtest", network: networks.regtest },
];

/** Refuses, before the chain is asked anything, an address that is not one of the configured network. */
function checkAddress(address: string, network: PaymentsSetup["network"]): void {
  try {
    btcAddress.toOutputScript(address, bitcoinNetwork(network));
    return;
  } catch {
    // Not one of ours: say whose it is, if anyone's.
  }
  const other = ADDRESS_NETWORKS.find((n) => {
    try {
      btcAddress.toOutputScript(address, n.network);
      return true;
    } catch {
      return false;
    }
  });
  const shown = address.length > 100 ? `${address.slice(0, 100)}...` : address;
  if (other) {
    throw new InvalidInputError(`${shown} is a ${other.name} address, and this wallet is on ${network}`, {
      hint: "send to an address of the same network, or set INFERNET_CHAIN_NETWORK",
    });
  }
  throw new InvalidInputError(`"${shown}" is not a Bitcoin address`, { hint: "check the address" });
}

/** A whole number of sats as typed ("25000", "25000sat", "25_000"); zero, negative and huge refused. */
function parseSats(text: string): bigint {
  const cleaned = text
    .trim()
    .replace(/_/g, "")
    .replace(/ ?sats?$/, "");
  if (!/^-?\d{1,30}$/.test(cleaned)) {
    throw new UsageError(`wallet withdraw: "${text.slice(0, 40)}" is not a whole number of sats`);
  }
  return checkSendAmount(BigInt(cleaned));
}
