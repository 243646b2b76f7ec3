import { IdempotencyConflictError, JobNotFoundError } from "../jobs/errors.ts";
import { RemoteServiceError } from "../payments/chain/http.ts";
import { ChannelError, ChannelTimeoutError, UnknownChannelError } from "../payments/channel/errors.ts";
import { InsufficientFundsError, LedgerInvariantError } from "../payments/ledger.ts";
import {
  AbortedError,
  ConfigError,
  DownloadError,
  FileNotFoundError,
  InfernetError,
  IntegrityError,
  InvalidInputError,
  NodeNotRunningError,
  NoProviderError,
  RuntimeError,
  TimeoutError,
  UnknownModelError,
  UsageError,
} from "../util/errors.ts";

/** Exit codes, one per kind of failure. Scripts may rely on these. */
export const EXIT = {
  ok: 0,
  internal: 1,
  usage: 2,
  notFound: 3,
  invalidInput: 4,
  download: 5,
  integrity: 6,
  runtime: 7,
  config: 8,
  noProvider: 9,
  notRunning: 10,
  /** A payment service (the chain backend, LND) failed, refused a request or cannot be reached. */
  paymentService: 11,
  /** Money cannot move: not enough coins or credit, a payment, escrow or channel refused. */
  payment: 12,
  timeout: 124,
  interrupted: 130,
} as const;

export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return EXIT.usage;
  if (err instanceof UnknownModelError || err instanceof FileNotFoundError || err instanceof JobNotFoundError) {
    return EXIT.notFound;
  }
  if (err instanceof InvalidInputError || err instanceof IdempotencyConflictError) return EXIT.invalidInput;
  if (err instanceof DownloadError) return EXIT.download;
  if (err instanceof IntegrityError) return EXIT.integrity;
  if (err instanceof RuntimeError) return EXIT.runtime;
  if (err instanceof ConfigError) return EXIT.config;
  if (err instanceof NoProviderError) return EXIT.noProvider;
  if (err instanceof NodeNotRunningError) return EXIT.notRunning;
  if (err instanceof TimeoutError) return EXIT.timeout;
  if (err instanceof AbortedError) return EXIT.interrupted;
  return paymentExitCode(err) ?? EXIT.internal;
}

/**
 * Payment failures. The wallet, invoice and Lightning escrow errors live in modules that load
 * bitcoinjs, bip32 and bolt11 (about 300 ms), which `--version` and `--help` must not pay for; they
 * are looked up only here, once an error is already on its way out. `require` returns the module the
 * command loaded, so `instanceof` holds exactly (names are not compared: a bundle may rename classes).
 */
function paymentExitCode(err: unknown): number | undefined {
  if (err instanceof LedgerInvariantError) return EXIT.internal;
  if (err instanceof InsufficientFundsError) return EXIT.payment;
  if (err instanceof ChannelTimeoutError) return EXIT.timeout;
  if (err instanceof UnknownChannelError) return EXIT.notFound;
  if (err instanceof ChannelError) return EXIT.payment;
  if (err instanceof RemoteServiceError) return EXIT.paymentService;
  if (!(err instanceof InfernetError)) return undefined;
  const { WalletKeyError } = require("../payments/wallet/key.ts") as typeof import("../payments/wallet/key.ts");
  if (err instanceof WalletKeyError) return EXIT.config;
  const { InsufficientCoinsError } =
    require("../payments/wallet/coin-select.ts") as typeof import("../payments/wallet/coin-select.ts");
  if (err instanceof InsufficientCoinsError) return EXIT.payment;
  const { InvoiceError } =
    require("../payments/lightning/invoice.ts") as typeof import("../payments/lightning/invoice.ts");
  if (err instanceof InvoiceError) return EXIT.invalidInput;
  const { PaymentFailedError } =
    require("../payments/lightning/lnd-errors.ts") as typeof import("../payments/lightning/lnd-errors.ts");
  if (err instanceof PaymentFailedError) return EXIT.payment;
  const { EscrowError } =
    require("../payments/lightning/lightning-rail.ts") as typeof import("../payments/lightning/lightning-rail.ts");
  if (err instanceof EscrowError) return EXIT.payment;
  return undefined;
}

/**
 * The one line a user sees for a failure: what went wrong and what to do. Unexpected errors
 * (bugs) say so and point at the log; stacks only with INFERNET_LOG=debug.
 */
export function describeError(err: unknown, debug: boolean): string {
  if (err instanceof InfernetError) {
    const line = `infernet: ${err.message}${err.hint ? ` (${err.hint})` : ""}`;
    return debug && err.stack ? `${line}\n${err.stack}` : line;
  }
  const message = err instanceof Error ? err.message : String(err);
  const line = `infernet: internal error: ${message} (please report it; INFERNET_LOG=debug shows details)`;
  return debug && err instanceof Error && err.stack ? `${line}\n${err.stack}` : line;
}
