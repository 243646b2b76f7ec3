import * as bolt11 from "bolt11";
import { InfernetError } from "../../util/errors.ts";
import { type Msat, msat } from "../amount.ts";
import { bitcoinNetwork, type ChainNetwork } from "../chain/network.ts";

/**
 * BOLT11 invoices, decoded and checked before anything is paid: the bech32 checksum and the
 * signature (recovered public key, or the `n` field when present), the network prefix, the expiry
 * and the amount. The `bolt11` package does the decoding; the checks are ours, so a lying aggregator
 * or a tampered invoice is refused here rather than by whatever the Lightning node happens to check.
 */

/** BOLT11 human-readable prefixes after "ln": bc, tb, tbs (signet), bcrt (regtest, as LND and CLN use). */
export const INVOICE_PREFIXES: Record<ChainNetwork, string> = {
  mainnet: "bc",
  testnet: "tb",
  signet: "tbs",
  regtest: "bcrt",
};

/**
 * Longest invoice decoded. BOLT11 sets no limit; this is the most a QR code holds (version 40,
 * numeric), far past any real invoice, and bounds the bech32 and tag parsing work on untrusted text.
 */
export const MAX_INVOICE_CHARS = 7089;

/** BOLT11: without an `x` field an invoice expires 3600 seconds after its timestamp. */
export const DEFAULT_INVOICE_EXPIRY_SECONDS = 3600;

/** Half the secp256k1 group order: BOLT11 readers SHOULD reject a recovered signature with a larger S. */
const SECP256K1_HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

/** `signature` covers an invoice signed by another node than the expected payee (a tampered one recovers another key). */
export type InvoiceFailure = "malformed" | "network" | "signature" | "expired" | "amount";

/** An invoice that must not be paid. */
export class InvoiceError extends InfernetError {
  readonly reason: InvoiceFailure;

  constructor(message: string, reason: InvoiceFailure, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options);
    this.reason = reason;
  }
}

export interface DecodedInvoice {
  /** The invoice, lowercase. */
  invoice: string;
  network: ChainNetwork;
  /** Hex, 32 bytes. */
  paymentHash: string;
  /** Absent for a "any amount" invoice. */
  amount: Msat | undefined;
  /** The node that signed it (compressed public key, hex). */
  payee: string;
  /** Seconds since the epoch. */
  timestamp: number;
  expiresAt: number;
  description: string | undefined;
  paymentSecret: string | undefined;
}

export interface InvoiceExpectations {
  network: ChainNetwork;
  /** The amount the caller means to pay; the invoice must ask for exactly this. */
  amount: Msat;
  /** The node the caller means to pay, when it knows it (hex public key). */
  payee?: string;
  /** Seconds since the epoch (tests); default now. */
  now?: number;
}

/** The `bolt11` package's network object for a chain (its prefix and address versions). */
export function bolt11Network(network: ChainNetwork) {
  const params = bitcoinNetwork(network);
  const { pubKeyHash, scriptHash } = params;
  return { bech32: INVOICE_PREFIXES[network], pubKeyHash, scriptHash, validWitnessVersions: [0, 1] };
}

/** The network whose prefix an invoice's human-readable part starts with (longest prefix first). */
function prefixNetwork(invoice: string): ChainNetwork | undefined {
  const hrp = invoice.slice(2, invoice.lastIndexOf("1"));
  const byLength = (Object.entries(INVOICE_PREFIXES) as [ChainNetwork, string][]).sort(
    (a, b) => b[1].length - a[1].length,
  );
  return byLength.find(([, prefix]) => hrp.startsWith(prefix))?.[0];
}

/** Decodes an invoice for `network`, checking checksum, prefix and signature; not expiry or amount. */
export function decodeInvoice(text: string, network: ChainNetwork): DecodedInvoice {
  const invoice = text
    .trim()
    .toLowerCase()
    .replace(/^lightning:/, "");
  if (invoice.length > MAX_INVOICE_CHARS) {
    throw new InvoiceError(`an invoice of ${invoice.length} characters is longer than any real one`, "malformed");
  }
  if (!invoice.startsWith("ln")) throw new InvoiceError("this is not a BOLT11 invoice (no ln prefix)", "malformed");
  const prefixed = prefixNetwork(invoice);
  if (prefixed !== network) {
    throw new InvoiceError(`this invoice is for ${prefixed ?? "an unknown network"}, not ${network}`, "network", {
      hint: `ask for a ${network} invoice (prefix ln${INVOICE_PREFIXES[network]})`,
    });
  }
  let decoded: ReturnType<typeof bolt11.decode>;
  try {
    decoded = bolt11.decode(invoice, bolt11Network(network));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const reason = /signature|pubkey|recover/i.test(message) ? "signature" : "malformed";
    throw new InvoiceError(`the invoice cannot be used: ${message}`, reason, { cause: err });
  }
  const sig = decoded.signature ?? "";
  if (sig.length !== 128 || BigInt(`0x${sig.slice(64)}`) > SECP256K1_HALF_ORDER) {
    throw new InvoiceError("the invoice's signature is not in low-S form", "signature");
  }
  const tags = decoded.tagsObject;
  const paymentHash = tags.payment_hash;
  if (!paymentHash || !/^[0-9a-f]{64}$/.test(paymentHash)) {
    throw new InvoiceError("the invoice has no payment hash", "malformed");
  }
  const timestamp = decoded.timestamp ?? 0;
  return {
    invoice,
    network,
    paymentHash,
    amount: decoded.millisatoshis ? msat(decoded.millisatoshis, "invoice amount") : undefined,
    payee: decoded.payeeNodeKey ?? "",
    timestamp,
    expiresAt: timestamp + (tags.expire_time ?? DEFAULT_INVOICE_EXPIRY_SECONDS),
    description: tags.description,
    paymentSecret: tags.payment_secret,
  };
}

/** `decodeInvoice`, then: not expired, asks exactly `amount`, signed by `payee` when given. */
export function checkInvoice(text: string, expect: InvoiceExpectations): DecodedInvoice {
  const inv = decodeInvoice(text, expect.network);
  const now = expect.now ?? Math.floor(Date.now() / 1000);
  if (now >= inv.expiresAt) {
    throw new InvoiceError(`the invoice expired at ${new Date(inv.expiresAt * 1000).toISOString()}`, "expired", {
      hint: "ask the payee for a new invoice",
    });
  }
  if (inv.amount === undefined) {
    throw new InvoiceError("the invoice names no amount; only invoices for the agreed amount are paid", "amount");
  }
  if (inv.amount !== expect.amount) {
    throw new InvoiceError(`the invoice asks ${inv.amount} msat, not the agreed ${expect.amount} msat`, "amount");
  }
  if (expect.payee !== undefined && inv.payee !== expect.payee.toLowerCase()) {
    throw new InvoiceError(
      `the invoice is signed by ${inv.payee}, not by the expected node ${expect.payee}`,
      "signature",
    );
  }
  return inv;
}
