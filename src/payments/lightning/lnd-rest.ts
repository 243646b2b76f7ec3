import { createHash, randomBytes } from "node:crypto";
import { z } from "zod";
import { ConfigError, InvalidInputError } from "../../util/errors.ts";
import { logger } from "../../util/logger.ts";
import { type Msat, msat } from "../amount.ts";
import { openRemote, parseJson, readCapped, requestText } from "../chain/http.ts";
import type { ChainNetwork } from "../chain/network.ts";
import { checkInvoice, decodeInvoice } from "./invoice.ts";
import { LndError, lndFailure, PaymentFailedError } from "./lnd-errors.ts";
import { lines, paymentLine } from "./lnd-stream.ts";
import {
  AddHoldInvoiceResp,
  AddInvoiceResponse,
  base64ToHex,
  GetInfo,
  Invoice,
  KEYSEND_RECORD,
  type LndPayment,
  MAX_LND_ANSWER_BYTES,
  MAX_LND_STREAM_UPDATES,
  toBase64,
  toBase64Url,
} from "./lnd-wire.ts";

/**
 * A client of LND's REST API (lightning.engineering/api-docs), for a user who runs an LND node:
 * invoices, hold invoices (invoicesrpc), payments and keysend through routerrpc's SendPaymentV2
 * (POST /v2/router/send, the current payment call; /v1/channels/transactions is deprecated). Auth is
 * the hex macaroon in `Grpc-Metadata-macaroon`; LND's REST port is TLS with its own self-signed
 * tls.cert, passed as `tlsCertPem`. Everything LND answers is size-capped and schema-checked, and a
 * payment's preimage is checked against its hash before it is believed.
 */

const log = logger("payments:lnd");

/** Deadline for unary calls and for a payment stream's first update. */
export const DEFAULT_LND_TIMEOUT_MS = 30_000;
/** routerrpc's timeout_seconds: how long LND keeps looking for a route before it gives up. */
export const PAYMENT_TIMEOUT_SECONDS = 60;
/** LND refuses invoice expiries beyond a year (invoices' maximum). */
export const MAX_INVOICE_EXPIRY_SECONDS = 365 * 24 * 3600;
/** BOLT11's description field holds at most 639 bytes. */
export const MAX_MEMO_BYTES = 639;

export interface LndRestInit {
  /** https://host:8080 (LND's restlisten). */
  url: string;
  macaroonHex: string;
  /** PEM of LND's tls.cert, trusted for this connection only. */
  tlsCertPem?: string;
  /** The chain the node runs on; invoices for any other are refused. */
  network: ChainNetwork;
  timeoutMs?: number;
}

export interface NodeInfo {
  pubkey: string;
  alias: string;
  blockHeight: number;
  syncedToChain: boolean;
  /** "mainnet", "testnet", "signet", "regtest" as LND names them. */
  network: string | undefined;
  version: string;
}

export type InvoiceState = "OPEN" | "ACCEPTED" | "SETTLED" | "CANCELED";

export interface LndInvoice {
  paymentHash: string;
  /** Hex; LND reports it once known (always for its own invoices, after settlement for hold ones). */
  preimage: string | undefined;
  state: InvoiceState;
  amount: Msat;
  amountPaid: Msat;
  invoice: string;
  memo: string;
  isKeysend: boolean;
}

export interface PaymentResult {
  paymentHash: string;
  preimage: string;
  amount: Msat;
  fee: Msat;
}

const HEX32 = /^[0-9a-f]{64}$/;
const PUBKEY = /^0[23][0-9a-f]{64}$/;

export class LndRest {
  readonly url: string;
  readonly network: ChainNetwork;
  readonly #macaroon: string;
  readonly #caPem: string | undefined;
  readonly #timeoutMs: number;

  constructor(init: LndRestInit) {
    if (!/^([0-9a-fA-F]{2})+$/.test(init.macaroonHex)) throw new InvalidInputError("the LND macaroon is not hex");
    this.url = init.url.replace(/\/+$/, "");
    this.network = init.network;
    this.#macaroon = init.macaroonHex;
    this.#caPem = init.tlsCertPem;
    this.#timeoutMs = init.timeoutMs ?? DEFAULT_LND_TIMEOUT_MS;
  }

  async getInfo(signal?: AbortSignal): Promise<NodeInfo> {
    const info = await this.#unary("GET", "/v1/getinfo", GetInfo, undefined, signal);
    return {
      pubkey: info.identity_pubkey,
      alias: info.alias,
      blockHeight: info.block_height,
      syncedToChain: info.synced_to_chain,
      network: info.chains[0]?.network,
      version: info.version,
    };
  }

  /** Refuses a node on another chain than the one configured (before any invoice is made or paid). */
  async assertNetwork(signal?: AbortSignal): Promise<NodeInfo> {
    const info = await this.getInfo(signal);
    if (info.network !== this.network) {
      throw new ConfigError(`the LND node runs on ${info.network ?? "an unknown network"}, not ${this.network}`, {
        hint: "point the Lightning settings at a node on the configured network, or change the network",
      });
    }
    return info;
  }

  /** A plain invoice (LND keeps the preimage and settles on payment): POST /v1/invoices. */
  async addInvoice(amount: Msat, memo: string, expirySeconds: number, signal?: AbortSignal) {
    checkMemoAndExpiry(memo, expirySeconds);
    const body = { value_msat: String(amount), memo, expiry: String(expirySeconds) };
    const res = await this.#unary("POST", "/v1/invoices", AddInvoiceResponse, body, signal);
    const paymentHash = base64ToHex(res.r_hash);
    this.#checkIssued(res.payment_request, paymentHash, amount);
    return { invoice: res.payment_request, paymentHash, addIndex: BigInt(res.add_index) };
  }

  /** A hold invoice for `paymentHash` (hex): POST /v2/invoices/hodl. Paid, it waits as ACCEPTED. */
  async addHoldInvoice(paymentHash: string, amount: Msat, memo: string, expirySeconds: number, signal?: AbortSignal) {
    checkHex32(paymentHash, "payment hash");
    checkMemoAndExpiry(memo, expirySeconds);
    const body = { hash: toBase64(paymentHash), value_msat: String(amount), memo, expiry: String(expirySeconds) };
    const res = await this.#unary("POST", "/v2/invoices/hodl", AddHoldInvoiceResp, body, signal);
    this.#checkIssued(res.payment_request, paymentHash, amount);
    return { invoice: res.payment_request, addIndex: BigInt(res.add_index) };
  }

  /** Settles an ACCEPTED hold invoice with its preimage (hex): POST /v2/invoices/settle. */
  async settleHoldInvoice(preimage: string, signal?: AbortSignal): Promise<void> {
    checkHex32(preimage, "preimage");
    await this.#unary("POST", "/v2/invoices/settle", LndEmpty, { preimage: toBase64(preimage) }, signal);
  }

  /** Cancels an open or accepted invoice; held funds go back to the payer: POST /v2/invoices/cancel. */
  async cancelHoldInvoice(paymentHash: string, signal?: AbortSignal): Promise<void> {
    checkHex32(paymentHash, "payment hash");
    await this.#unary("POST", "/v2/invoices/cancel", LndEmpty, { payment_hash: toBase64(paymentHash) }, signal);
  }

  /** GET /v2/invoices/lookup?payment_hash=; undefined when LND has no such invoice (NotFound). */
  async lookupInvoice(paymentHash: string, signal?: AbortSignal): Promise<LndInvoice | undefined> {
    checkHex32(paymentHash, "payment hash");
    const path = `/v2/invoices/lookup?payment_hash=${encodeURIComponent(toBase64Url(paymentHash))}`;
    let inv: z.output<typeof Invoice>;
    try {
      inv = await this.#unary("GET", path, Invoice, undefined, signal);
    } catch (err) {
      if (err instanceof LndError && (err.grpcCode === 5 || err.status === 404)) return undefined;
      throw err;
    }
    const hash = base64ToHex(inv.r_hash);
    if (hash !== paymentHash)
      throw new LndError(`LND answered invoice ${hash} for ${paymentHash}`, { reason: "shape" });
    const preimage = base64ToHex(inv.r_preimage);
    const known = HEX32.test(preimage) && sha256Hex(preimage) === hash;
    return {
      paymentHash: hash,
      preimage: known ? preimage : undefined,
      state: inv.state,
      amount: msat(inv.value_msat, "invoice value"),
      amountPaid: msat(inv.amt_paid_msat, "amount paid"),
      invoice: inv.payment_request,
      memo: inv.memo,
      isKeysend: inv.is_keysend,
    };
  }

  /**
   * Pays a BOLT11 invoice after checking it (signature, network, expiry, exactly `amount`, signed by
   * `payee` when given). Resolves when the payment settles; a hold invoice's payment stays in flight
   * until its payee settles or cancels it. Aborting stops the wait, not a payment LND already sent.
   */
  async payInvoice(
    bolt11: string,
    amount: Msat,
    maxFee: Msat,
    options: { payee?: string; signal?: AbortSignal } = {},
  ): Promise<PaymentResult> {
    const inv = checkInvoice(bolt11, { network: this.network, amount, payee: options.payee });
    const body = {
      payment_request: inv.invoice,
      fee_limit_msat: String(maxFee),
      timeout_seconds: PAYMENT_TIMEOUT_SECONDS,
      // In-flight updates on: the first arrives at once, so the stream's headers do not wait for settlement.
      no_inflight_updates: false,
    };
    return this.#pay(body, inv.paymentHash, amount, maxFee, options.signal);
  }

  /** Spontaneous payment to a node (keysend): the preimage travels in TLV record 5482373484. */
  async keysend(destPubkey: string, amount: Msat, maxFee: Msat, signal?: AbortSignal): Promise<PaymentResult> {
    if (!PUBKEY.test(destPubkey)) throw new InvalidInputError(`"${destPubkey.slice(0, 80)}" is not a node public key`);
    if (amount <= 0n) throw new InvalidInputError("a keysend of nothing");
    const preimage = randomBytes(32).toString("hex");
    const paymentHash = sha256Hex(preimage);
    const body = {
      dest: toBase64(destPubkey),
      amt_msat: String(amount),
      payment_hash: toBase64(paymentHash),
      dest_custom_records: { [KEYSEND_RECORD]: toBase64(preimage) },
      fee_limit_msat: String(maxFee),
      timeout_seconds: PAYMENT_TIMEOUT_SECONDS,
      no_inflight_updates: false,
    };
    return this.#pay(body, paymentHash, amount, maxFee, signal);
  }

  async #pay(body: object, hash: string, amount: Msat, maxFee: Msat, signal?: AbortSignal): Promise<PaymentResult> {
    const open = await openRemote(this.#request("POST", "/v2/router/send", body, signal), LndError, true);
    try {
      if (open.response.status !== 200) {
        const text = await readAll(open.response, open.signal);
        throw lndFailure(open.response.status, text);
      }
      const body = open.response.body;
      if (!body) throw new LndError("LND sent an empty payment stream", { reason: "shape" });
      let updates = 0;
      // Leaving the loop (a result, a failure, an error) cancels the stream through the generator's finally.
      for await (const line of lines(body, open.signal)) {
        if (++updates > MAX_LND_STREAM_UPDATES)
          throw new LndError("LND sent too many payment updates", { reason: "too-large" });
        const payment = paymentLine(line);
        if (payment.payment_hash !== hash) {
          throw new LndError(`LND reported payment ${payment.payment_hash} for ${hash}`, { reason: "shape" });
        }
        if (payment.status === "FAILED") {
          throw new PaymentFailedError(`the payment failed: ${payment.failure_reason}`, payment.failure_reason, hash);
        }
        if (payment.status === "SUCCEEDED") return settled(payment, hash, amount, maxFee);
      }
      throw new LndError("LND's payment stream ended before the payment resolved", {
        reason: "unreachable",
        hint: "the payment may still complete: look it up on the node before paying again",
      });
    } finally {
      open.release();
    }
  }

  /** Checks what LND issued: our network, our hash, our amount. */
  #checkIssued(invoice: string, paymentHash: string, amount: Msat): void {
    const inv = decodeInvoice(invoice, this.network);
    if (inv.paymentHash !== paymentHash || inv.amount !== amount) {
      throw new LndError("LND issued an invoice that does not match the request", { reason: "shape" });
    }
  }

  async #unary<S extends z.ZodType>(
    method: "GET" | "POST",
    path: string,
    schema: S,
    body: object | undefined,
    signal: AbortSignal | undefined,
  ): Promise<z.output<S>> {
    const answer = await requestText(this.#request(method, path, body, signal), LndError);
    if (answer.status !== 200) throw lndFailure(answer.status, answer.text);
    return parseJson(answer.text, schema, `LND ${path.split("?")[0]}`, LndError, answer.status);
  }

  #request(method: "GET" | "POST", path: string, body: object | undefined, signal: AbortSignal | undefined) {
    return {
      service: "LND",
      url: `${this.url}${path}`,
      method,
      headers: { "Grpc-Metadata-macaroon": this.#macaroon, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      maxBytes: MAX_LND_ANSWER_BYTES,
      timeoutMs: this.#timeoutMs,
      signal,
      caPem: this.#caPem,
    };
  }
}

/** Settle and cancel answer `{}`. */
const LndEmpty = z.object({});

function settled(payment: LndPayment, hash: string, amount: Msat, maxFee: Msat): PaymentResult {
  const preimage = payment.payment_preimage;
  if (!HEX32.test(preimage) || sha256Hex(preimage) !== hash) {
    throw new LndError("LND reported a payment succeeded with a preimage that does not match its hash", {
      reason: "shape",
    });
  }
  const fee = msat(payment.fee_msat, "routing fee");
  const value = msat(payment.value_msat, "payment value");
  if (value !== amount) log.warn("LND paid another amount than asked", { asked: String(amount), paid: String(value) });
  if (fee > maxFee) log.warn("LND paid more fee than its limit", { limit: String(maxFee), fee: String(fee) });
  return { paymentHash: hash, preimage, amount: value, fee };
}

function readAll(response: Response, signal: AbortSignal): Promise<string> {
  return readCapped(response, MAX_LND_ANSWER_BYTES, "LND", LndError, signal);
}

function checkHex32(hex: string, what: string): void {
  if (!HEX32.test(hex)) throw new InvalidInputError(`the ${what} is not 32 bytes of lowercase hex`);
}

function checkMemoAndExpiry(memo: string, expirySeconds: number): void {
  if (Buffer.byteLength(memo, "utf8") > MAX_MEMO_BYTES) {
    throw new InvalidInputError(`an invoice memo holds at most ${MAX_MEMO_BYTES} bytes (BOLT11)`);
  }
  if (!Number.isInteger(expirySeconds) || expirySeconds < 1 || expirySeconds > MAX_INVOICE_EXPIRY_SECONDS) {
    throw new InvalidInputError(`an invoice expiry of ${expirySeconds} s is not between 1 s and a year`);
  }
}

export function sha256Hex(hex: string): string {
  return createHash("sha256").update(Buffer.from(hex, "hex")).digest("hex");
}
