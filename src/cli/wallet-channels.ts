import { ControlClient } from "../node/control/client.ts";
import { formatMsat, msat, parseAmountText } from "../payments/amount.ts";
import { ChannelStore } from "../payments/channel/store.ts";
import { UsageError } from "../util/errors.ts";
import { MAX_AMOUNT_FLAG_MSAT } from "./args.ts";
import type { CliContext } from "./command.ts";

/**
 * `infernet wallet fund|pay|close`: the running node's payment channels (they need its libp2p
 * connections, so they go through its control socket): open a channel to a peer funded from the
 * on-chain wallet, pay over it with a memo saying what for, close it cooperatively.
 */

/** Memos a payment may carry (what the payee books it as). */
export const PAYMENT_MEMOS = ["deposit", "bond", "earnings", "payment"] as const;
/** Largest amount one `wallet pay` sends, msat (1 BTC): anything above is a typo. */
export const MAX_PAY_MSAT: bigint = MAX_AMOUNT_FLAG_MSAT;

/** "5000", "5000sat", "2.5sat", "1500msat" -> msat. */
export function parsePayAmount(text: string): bigint {
  const amount = parseAmountText(text, "sat");
  if (amount === undefined) {
    throw new UsageError(`wallet pay: "${text.slice(0, 32)}" is not an amount`, {
      hint: "sats (5000, 2.5sat) or millisatoshis (1500msat)",
    });
  }
  if (amount === 0n || amount > MAX_PAY_MSAT) {
    throw new UsageError(`wallet pay: ${text.slice(0, 32)} is not between 1 msat and 1 BTC`);
  }
  return amount;
}

export interface ChannelFlags {
  to?: string;
  memo?: string;
  json?: boolean;
}

/** Runs `wallet fund|pay|close`; undefined for any other action. */
export async function runChannelAction(
  ctx: CliContext,
  action: string,
  rest: string[],
  flags: ChannelFlags,
): Promise<number | undefined> {
  if (action !== "fund" && action !== "pay" && action !== "close") return undefined;
  const [first, extra] = rest;
  if (extra !== undefined) throw new UsageError(`wallet ${action}: unexpected argument "${extra}"`);
  const control = await ControlClient.require(ctx.config().home);
  const out = (value: object, line: string) =>
    ctx.stdout.write(flags.json ? `${JSON.stringify(value)}\n` : `${line}\n`);
  if (action === "close") {
    if (!first) throw new UsageError("wallet close: give the channel's id (or the start of it)");
    const { txid } = await control.closeChannel(channelId(ctx, first));
    out({ txid }, txid);
    return 0;
  }
  if (!flags.to) throw new UsageError(`wallet ${action}: --to PEER says whom (a peer id, or its multiaddr)`);
  if (!first) throw new UsageError(`wallet ${action}: give an amount`);
  if (action === "fund") {
    if (!/^\d{1,16}$/.test(first))
      throw new UsageError(`wallet fund: "${first.slice(0, 32)}" is not a whole number of sats`);
    const opened = await control.fundChannel(flags.to, BigInt(first));
    out(
      opened,
      `${opened.channel} (${BigInt(opened.capacitySats).toLocaleString("en-US")} sat, refund from block ${opened.refundHeight})`,
    );
    return 0;
  }
  const memo = flags.memo ?? "payment";
  if (!(PAYMENT_MEMOS as readonly string[]).includes(memo)) {
    throw new UsageError(`wallet pay: --memo is one of ${PAYMENT_MEMOS.join(", ")}`);
  }
  const amount = parsePayAmount(first);
  const peer = flags.to.startsWith("/") ? flags.to : flags.to.trim();
  const paid = await control.payChannel(peer, amount, memo);
  out(
    paid,
    `paid ${formatMsat(msat(amount))} (${memo}); the channel has paid ${formatMsat(msat(paid.paidMsat))} in all`,
  );
  return 0;
}

/** The full id of the channel `prefix` names (unique), from the node's database. */
function channelId(ctx: CliContext, prefix: string): string {
  const ids = new ChannelStore(ctx.store())
    .list()
    .map((c) => c.params.id)
    .filter((id) => {
      // The screen shortens ids as "start…:vout".
      const [head = "", tail = ""] = prefix.split("…");
      return id.startsWith(head) && id.endsWith(tail);
    });
  if (ids.length === 1) return ids[0] as string;
  throw new UsageError(
    ids.length
      ? `"${prefix}" names ${ids.length} channels`
      : `no channel "${prefix.slice(0, 80)}" in this node's database`,
    { hint: "see `infernet wallet` for the ids" },
  );
}
