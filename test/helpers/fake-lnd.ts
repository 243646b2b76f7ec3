import { createHash, randomBytes } from "node:crypto";
import * as ecc from "@bitcoinerlab/secp256k1";
import * as bolt11 from "bolt11";
import type { ChainNetwork } from "../../src/payments/chain/network.ts";
import { bolt11Network, INVOICE_PREFIXES } from "../../src/payments/lightning/invoice.ts";
import type { Override } from "./fake-esplora.ts";

/**
 * A FAKE of LND's REST API: no Lightning node can run here, so Lightning tests talk to this Bun.serve
 * server, which speaks LND's wire format for the calls Infernet makes (paths, proto field names,
 * base64 bytes, int64s as strings, `{code, message, details}` errors with grpc-gateway's HTTP
 * statuses, SendPaymentV2's newline-delimited `{"result": Payment}` stream, the
 * `Grpc-Metadata-macaroon` check). Behind it is an in-memory node with a real secp256k1 key: its
 * invoices are real BOLT11 strings signed with that key by the `bolt11` package, settlement checks
 * sha256(preimage) against the hash, hold invoices go OPEN -> ACCEPTED -> SETTLED or CANCELED as in
 * LND. Fakes in one `registry` pay each other: a payment from A to B's invoice moves B's invoice and
 * both balances. What it does not model: routing, channels, CLTV, HTLC timeouts, MPP.
 */

export type FakeLndRegistry = Map<string, FakeLnd>;
type Outcome = { preimage: string } | { failure: string };
type State = "OPEN" | "ACCEPTED" | "SETTLED" | "CANCELED";

interface FakeInvoice {
  hash: string;
  preimage: string | undefined;
  valueMsat: bigint;
  memo: string;
  expiry: number;
  creationDate: number;
  paymentRequest: string;
  paymentAddr: string;
  state: State;
  hold: boolean;
  addIndex: bigint;
  settleDate: number;
  amtPaidMsat: bigint;
  isKeysend: boolean;
  waiters: Array<(o: Outcome) => void>;
}

export interface FakeLndOptions {
  network?: ChainNetwork;
  registry?: FakeLndRegistry;
  balanceMsat?: bigint;
  /** What every payment from this node costs in routing fees. */
  routingFeeMsat?: bigint;
  acceptKeysend?: boolean;
  /** Serve https with this key pair (LND's REST is always TLS). */
  tls?: { cert: string; key: string };
  /** Put the `n` (payee node key) field in invoices; LND leaves it out and relies on key recovery. */
  payeeKeyTag?: boolean;
}

const sha256 = (hex: string) => createHash("sha256").update(Buffer.from(hex, "hex")).digest("hex");
const b64 = (hex: string) => Buffer.from(hex, "hex").toString("base64");
const unb64 = (s: unknown) => Buffer.from(String(s ?? ""), "base64").toString("hex");
const now = () => Math.floor(Date.now() / 1000);
const ZERO_PREIMAGE = "0".repeat(64);

/** LND's errors: `{code, message, details}` at the HTTP status grpc-gateway maps the gRPC code to. */
function grpcError(code: number, message: string, stream = false): Response {
  const status = { 2: 500, 3: 400, 5: 404, 6: 409 }[code] ?? 500;
  const body = { code, message, details: [] };
  return Response.json(stream ? { error: body } : body, { status });
}

export class FakeLnd implements AsyncDisposable {
  readonly network: ChainNetwork;
  readonly pubkey: string;
  readonly macaroonHex = randomBytes(64).toString("hex");
  readonly registry: FakeLndRegistry;
  readonly invoices = new Map<string, FakeInvoice>();
  readonly payments = new Map<string, { status: string; preimage: string; feeMsat: bigint; valueMsat: bigint }>();
  readonly requests: string[] = [];
  balanceMsat: bigint;
  routingFeeMsat: bigint;
  acceptKeysend: boolean;
  override: Override | undefined;
  readonly #key = randomBytes(32);
  readonly #payeeKeyTag: boolean;
  readonly #server: ReturnType<typeof Bun.serve>;
  #addIndex = 0n;

  constructor(options: FakeLndOptions = {}) {
    this.network = options.network ?? "regtest";
    this.registry = options.registry ?? new Map();
    this.balanceMsat = options.balanceMsat ?? 10_000_000_000n;
    this.routingFeeMsat = options.routingFeeMsat ?? 1_000n;
    this.acceptKeysend = options.acceptKeysend ?? true;
    this.#payeeKeyTag = options.payeeKeyTag ?? false;
    this.pubkey = Buffer.from(ecc.pointFromScalar(this.#key, true) as Uint8Array).toString("hex");
    this.registry.set(this.pubkey, this);
    this.#server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      idleTimeout: 0,
      ...(options.tls ? { tls: options.tls } : {}),
      fetch: (req) => this.#handle(req),
    });
  }

  get url(): string {
    return `${this.#server.url.protocol}//127.0.0.1:${this.#server.port}`;
  }

  async stop(): Promise<void> {
    this.registry.delete(this.pubkey);
    await this.#server.stop(true);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** A BOLT11 invoice signed by this node's key, as LND encodes one (p, s, d, x, c, 9 fields). */
  encodeInvoice(hash: string, valueMsat: bigint, memo: string, expiry: number, timestamp = now()): string {
    const tags: Array<{ tagName: string; data: unknown }> = [
      { tagName: "payment_hash", data: hash },
      { tagName: "payment_secret", data: randomBytes(32).toString("hex") },
      { tagName: "description", data: memo },
      { tagName: "expire_time", data: expiry },
      { tagName: "min_final_cltv_expiry", data: 80 },
    ];
    if (this.#payeeKeyTag) tags.push({ tagName: "payee_node_key", data: this.pubkey });
    const network = bolt11Network(this.network);
    // A zero-amount ("any amount") invoice has no amount in its prefix at all (BOLT11).
    const amount = valueMsat > 0n ? { millisatoshis: String(valueMsat) } : {};
    const encoded = bolt11.encode({ network, ...amount, timestamp, tags } as never);
    return bolt11.sign(encoded, this.#key).paymentRequest as string;
  }

  #newInvoice(
    hash: string,
    preimage: string | undefined,
    valueMsat: bigint,
    memo: string,
    expiry: number,
    hold: boolean,
  ) {
    if (this.invoices.has(hash)) throw new Error("invoice with payment hash already exists");
    const inv: FakeInvoice = {
      hash,
      preimage,
      valueMsat,
      memo,
      expiry,
      creationDate: now(),
      paymentRequest: this.encodeInvoice(hash, valueMsat, memo, expiry),
      paymentAddr: randomBytes(32).toString("hex"),
      state: "OPEN",
      hold,
      addIndex: ++this.#addIndex,
      settleDate: 0,
      amtPaidMsat: 0n,
      isKeysend: false,
      waiters: [],
    };
    this.invoices.set(hash, inv);
    return inv;
  }

  /** lnrpc.Invoice as LND marshals it (deprecated and always-empty fields left out). */
  #invoiceJson(inv: FakeInvoice) {
    return {
      memo: inv.memo,
      r_preimage: inv.preimage && inv.state === "SETTLED" ? b64(inv.preimage) : inv.hold ? "" : b64(inv.preimage ?? ""),
      r_hash: b64(inv.hash),
      value_msat: String(inv.valueMsat),
      creation_date: String(inv.creationDate),
      settle_date: String(inv.settleDate),
      payment_request: inv.paymentRequest,
      expiry: String(inv.expiry),
      cltv_expiry: "80",
      add_index: String(inv.addIndex),
      settle_index: inv.state === "SETTLED" ? String(inv.addIndex) : "0",
      amt_paid_sat: String(inv.amtPaidMsat / 1000n),
      amt_paid_msat: String(inv.amtPaidMsat),
      state: inv.state,
      htlcs: [],
      features: {},
      is_keysend: inv.isKeysend,
      payment_addr: b64(inv.paymentAddr),
    };
  }

  /** An HTLC set arriving from another fake: settles, holds (ACCEPTED) or fails, as LND's invoice registry. */
  receive(hash: string, amountMsat: bigint, keysendPreimage?: string): Promise<Outcome> {
    const refuse = { failure: "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS" };
    if (keysendPreimage !== undefined) {
      if (!this.acceptKeysend || sha256(keysendPreimage) !== hash || this.invoices.has(hash))
        return Promise.resolve(refuse);
      const inv = this.#newInvoice(hash, keysendPreimage, amountMsat, "", 3600, false);
      Object.assign(inv, { state: "SETTLED", isKeysend: true, amtPaidMsat: amountMsat, settleDate: now() });
      this.balanceMsat += amountMsat;
      return Promise.resolve({ preimage: keysendPreimage });
    }
    const inv = this.invoices.get(hash);
    if (inv?.state !== "OPEN" || now() >= inv.creationDate + inv.expiry || amountMsat < inv.valueMsat) {
      return Promise.resolve(refuse);
    }
    inv.amtPaidMsat = amountMsat;
    if (!inv.hold) {
      Object.assign(inv, { state: "SETTLED", settleDate: now() });
      this.balanceMsat += amountMsat;
      return Promise.resolve({ preimage: inv.preimage as string });
    }
    inv.state = "ACCEPTED";
    return new Promise((resolve) => inv.waiters.push(resolve));
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    this.requests.push(`${req.method} ${url.pathname}`);
    const forced = await this.override?.(req, url.pathname);
    if (forced) return forced;
    const macaroon = req.headers.get("grpc-metadata-macaroon");
    if (macaroon === null) return grpcError(2, "expected 1 macaroon, got 0");
    if (macaroon !== this.macaroonHex)
      return grpcError(2, "verification failed: signature mismatch after caveat verification");
    let body: Record<string, unknown> = {};
    if (req.method === "POST") {
      try {
        body = JSON.parse(await req.text());
      } catch (err) {
        return grpcError(3, `proto: syntax error: ${(err as Error).message}`);
      }
    }
    try {
      return this.#route(req.method, url, body);
    } catch (err) {
      return grpcError(2, (err as Error).message);
    }
  }

  #route(method: string, url: URL, body: Record<string, unknown>): Response | Promise<Response> {
    const path = url.pathname;
    if (method === "GET" && path === "/v1/getinfo") {
      // The fields Infernet reads and a few it ignores (LND sends every field of GetInfoResponse).
      return Response.json({
        version: "0.18.4-beta fake",
        identity_pubkey: this.pubkey,
        alias: "fake-lnd",
        block_height: 100,
        synced_to_chain: true,
        chains: [{ chain: "bitcoin", network: this.network }],
        uris: [],
        features: {},
      });
    }
    if (method === "POST" && path === "/v1/invoices") {
      const preimage = body.r_preimage ? unb64(body.r_preimage) : randomBytes(32).toString("hex");
      const value = BigInt(String(body.value_msat ?? "0")) || BigInt(String(body.value ?? "0")) * 1000n;
      const inv = this.#newInvoice(
        sha256(preimage),
        preimage,
        value,
        String(body.memo ?? ""),
        Number(body.expiry ?? 86400),
        false,
      );
      return Response.json({
        r_hash: b64(inv.hash),
        payment_request: inv.paymentRequest,
        add_index: String(inv.addIndex),
        payment_addr: b64(inv.paymentAddr),
      });
    }
    if (method === "POST" && path === "/v2/invoices/hodl") {
      const hash = unb64(body.hash);
      if (hash.length !== 64) return grpcError(2, "invalid hash");
      const value = BigInt(String(body.value_msat ?? "0")) || BigInt(String(body.value ?? "0")) * 1000n;
      const inv = this.#newInvoice(hash, undefined, value, String(body.memo ?? ""), Number(body.expiry ?? 86400), true);
      return Response.json({
        payment_request: inv.paymentRequest,
        add_index: String(inv.addIndex),
        payment_addr: b64(inv.paymentAddr),
      });
    }
    if (method === "POST" && path === "/v2/invoices/settle") {
      const preimage = unb64(body.preimage);
      const inv = this.invoices.get(sha256(preimage));
      if (!inv) return grpcError(2, "unable to locate invoice");
      if (inv.state === "SETTLED") return Response.json({});
      if (inv.state === "OPEN") return grpcError(2, "invoice still open");
      if (inv.state === "CANCELED") return grpcError(2, "invoice already canceled");
      Object.assign(inv, { state: "SETTLED", preimage, settleDate: now() });
      this.balanceMsat += inv.amtPaidMsat;
      for (const w of inv.waiters.splice(0)) w({ preimage });
      return Response.json({});
    }
    if (method === "POST" && path === "/v2/invoices/cancel") {
      const inv = this.invoices.get(unb64(body.payment_hash));
      if (!inv) return grpcError(2, "unable to locate invoice");
      if (inv.state === "SETTLED") return grpcError(2, "invoice already settled");
      inv.state = "CANCELED";
      for (const w of inv.waiters.splice(0)) w({ failure: "FAILURE_REASON_INCORRECT_PAYMENT_DETAILS" });
      return Response.json({});
    }
    const hexPath = /^\/v1\/invoice\/([0-9a-f]{64})$/.exec(path);
    if (method === "GET" && (path === "/v2/invoices/lookup" || hexPath)) {
      const hash = hexPath ? (hexPath[1] as string) : unb64(url.searchParams.get("payment_hash"));
      const inv = this.invoices.get(hash);
      return inv ? Response.json(this.#invoiceJson(inv)) : grpcError(5, "unable to locate invoice");
    }
    if (method === "POST" && path === "/v2/router/send") return this.#send(body);
    return grpcError(5, "Not Found");
  }

  #send(body: Record<string, unknown>): Response {
    if (!(Number(body.timeout_seconds) > 0)) return grpcError(2, "timeout_seconds must be specified", true);
    let dest: string;
    let hash: string;
    let amount: bigint;
    let keysend: string | undefined;
    const request = String(body.payment_request ?? "");
    if (request) {
      let decoded: ReturnType<typeof bolt11.decode>;
      try {
        decoded = bolt11.decode(request, bolt11Network(this.network));
      } catch (err) {
        const foreign = !request.toLowerCase().startsWith(`ln${INVOICE_PREFIXES[this.network]}`);
        const message = foreign
          ? `invoice not for current active network '${this.network}'`
          : `unable to decode payment request: ${(err as Error).message}`;
        return grpcError(2, message, true);
      }
      if (now() >= (decoded.timeExpireDate ?? (decoded.timestamp ?? 0) + 3600)) {
        return grpcError(2, "invoice expired", true);
      }
      dest = decoded.payeeNodeKey ?? "";
      hash = decoded.tagsObject.payment_hash ?? "";
      amount = BigInt(decoded.millisatoshis ?? String(body.amt_msat ?? "0"));
    } else {
      dest = unb64(body.dest);
      hash = unb64(body.payment_hash);
      amount = BigInt(String(body.amt_msat ?? "0"));
      const records = (body.dest_custom_records ?? {}) as Record<string, unknown>;
      keysend = records["5482373484"] === undefined ? undefined : unb64(records["5482373484"]);
    }
    const earlier = this.payments.get(hash);
    if (earlier?.status === "SUCCEEDED") return grpcError(6, "invoice is already paid", true);
    if (earlier?.status === "IN_FLIGHT") return grpcError(6, "payment is in transition", true);
    if (dest === this.pubkey) return grpcError(2, "no self-payments allowed", true);
    const record = { status: "IN_FLIGHT", preimage: ZERO_PREIMAGE, feeMsat: 0n, valueMsat: amount };
    this.payments.set(hash, record);
    // lnrpc.Payment as LND marshals it (deprecated fields left out): hashes and preimages are hex here.
    const line = (failure = "FAILURE_REASON_NONE") =>
      `${JSON.stringify({
        result: {
          payment_hash: hash,
          payment_preimage: record.preimage,
          value_sat: String(amount / 1000n),
          value_msat: String(amount),
          payment_request: request,
          status: record.status,
          fee_sat: String(record.feeMsat / 1000n),
          fee_msat: String(record.feeMsat),
          creation_time_ns: String(Date.now() * 1_000_000),
          htlcs: [],
          payment_index: String(this.payments.size),
          failure_reason: failure,
        },
      })}\n`;
    const outcome = this.#forward(dest, hash, amount, BigInt(String(body.fee_limit_msat ?? "0")), keysend);
    const encoder = new TextEncoder();
    let open = true;
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        controller.enqueue(encoder.encode(line()));
        void outcome.then((o) => {
          if ("preimage" in o)
            Object.assign(record, { status: "SUCCEEDED", preimage: o.preimage, feeMsat: this.routingFeeMsat });
          else record.status = "FAILED";
          if (!open) return;
          controller.enqueue(encoder.encode(line("failure" in o ? o.failure : undefined)));
          controller.close();
        });
      },
      cancel: () => {
        open = false; // LND carries on with the payment when its client goes away; so does this fake.
      },
    });
    return new Response(stream, { headers: { "content-type": "application/json" } });
  }

  /** "Routes" the payment to the destination fake; the payer's balance is held while it is in flight. */
  async #forward(dest: string, hash: string, amount: bigint, feeLimit: bigint, keysend?: string): Promise<Outcome> {
    const payee = this.registry.get(dest);
    if (!payee || this.routingFeeMsat > feeLimit) return { failure: "FAILURE_REASON_NO_ROUTE" };
    const total = amount + this.routingFeeMsat;
    if (total > this.balanceMsat) return { failure: "FAILURE_REASON_INSUFFICIENT_BALANCE" };
    this.balanceMsat -= total;
    const outcome = await payee.receive(hash, amount, keysend);
    if ("failure" in outcome) this.balanceMsat += total;
    return outcome;
  }
}
