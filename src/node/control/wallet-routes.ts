import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { z } from "zod";
import { msat } from "../../payments/amount.ts";
import { InfernetError, InvalidInputError, UsageError } from "../../util/errors.ts";
import type { InfernetNode } from "../node.ts";
import { errorLine } from "./ndjson.ts";

/**
 * The node's channels on the control socket, for `infernet wallet fund|pay|close`: open a channel
 * to a peer funded from the on-chain wallet, pay over it (with what the payment is for), close it.
 * Amounts travel as decimal strings (sats, msat), never as floats.
 */

export const WALLET_FUND_PATH = "/v1/wallet/fund";
export const WALLET_PAY_PATH = "/v1/wallet/pay";
export const WALLET_CLOSE_PATH = "/v1/wallet/close";
/** Largest wallet request body. */
export const MAX_WALLET_BODY_BYTES = 4 * 1024;
/** Longest wait for the peer and the chain while opening, paying or closing. */
export const WALLET_CALL_TIMEOUT_MS = 60_000;

const whole = z.string().regex(/^\d{1,19}$/, "a whole number");
/** A peer id, or a multiaddr ending in /p2p/<id> (dialled first). */
const peer = z.string().min(1).max(1024);
export const FundBodySchema = z.strictObject({ peer, sats: whole });
export const PayBodySchema = z.strictObject({ peer, msat: whole, memo: z.string().max(64).default("") });
export const CloseBodySchema = z.strictObject({ channel: z.string().min(1).max(128) });

export type FundAnswer = { channel: string; capacitySats: string; refundHeight: number };
export type PayAnswer = { sequence: number; paidMsat: string };
export type CloseAnswer = { txid: string };

export async function routeWallet(node: InfernetNode, req: Request, url: URL): Promise<Response | undefined> {
  if (req.method !== "POST") return undefined;
  const signal = AbortSignal.any([req.signal, AbortSignal.timeout(WALLET_CALL_TIMEOUT_MS)]);
  try {
    if (url.pathname === WALLET_FUND_PATH) {
      const body = FundBodySchema.parse(await bodyOf(req));
      const id = await reach(node, body.peer, signal);
      const params = await node.channels.open(id, BigInt(body.sats), signal);
      return Response.json({
        channel: params.id,
        capacitySats: params.capacitySats.toString(),
        refundHeight: params.refundHeight,
      } satisfies FundAnswer);
    }
    if (url.pathname === WALLET_PAY_PATH) {
      const body = PayBodySchema.parse(await bodyOf(req));
      const id = await reach(node, body.peer, signal);
      const state = await node.channels.pay(id.toString(), msat(body.msat, "msat"), body.memo, signal);
      return Response.json({ sequence: state.sequence, paidMsat: state.paidMsat.toString() } satisfies PayAnswer);
    }
    if (url.pathname === WALLET_CLOSE_PATH) {
      const body = CloseBodySchema.parse(await bodyOf(req));
      return Response.json({ txid: await node.channels.close(body.channel, signal) } satisfies CloseAnswer);
    }
    return undefined;
  } catch (err) {
    const error = err instanceof z.ZodError ? new UsageError(`bad wallet request: ${err.issues[0]?.message}`) : err;
    const status =
      error instanceof UsageError || error instanceof InvalidInputError
        ? 400
        : error instanceof InfernetError
          ? 422
          : 500;
    return Response.json(errorLine(error), { status });
  }
}

async function bodyOf(req: Request): Promise<unknown> {
  const text = await req.text();
  if (text.length > MAX_WALLET_BODY_BYTES) throw new UsageError(`the body is over ${MAX_WALLET_BODY_BYTES} bytes`);
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError("the body is not JSON");
  }
}

/** The peer's id; a multiaddr is dialled first, so the channel protocol finds a connection. */
async function reach(node: InfernetNode, text: string, signal: AbortSignal) {
  if (!text.startsWith("/")) {
    try {
      return peerIdFromString(text);
    } catch {
      throw new UsageError(`"${text.slice(0, 64)}" is not a peer id or a multiaddr`);
    }
  }
  let addr: ReturnType<typeof multiaddr>;
  try {
    addr = multiaddr(text);
  } catch {
    throw new UsageError(`"${text.slice(0, 64)}" is not a valid multiaddr`);
  }
  const id = addr.getComponents().findLast((c) => c.name === "p2p")?.value;
  if (!id) throw new UsageError(`the multiaddr ${text.slice(0, 64)} does not end in /p2p/<peer id>`);
  await node.dial(addr, signal);
  return peerIdFromString(id);
}
