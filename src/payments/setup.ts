import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { type Config, SETTINGS } from "../config/index.ts";
import { ConfigError, errorMessage } from "../util/errors.ts";
import { type Chain, ChainError, type SatPerKvb, satPerVbyteToKvb } from "./chain/chain.ts";
import { openChain } from "./chain/index.ts";
import type { ChainNetwork } from "./chain/network.ts";
import { LndRest } from "./lightning/lnd-rest.ts";
import { WALLET_KEY_FILE, WalletKey } from "./wallet/key.ts";
import { Wallet } from "./wallet/wallet.ts";

/**
 * The payment components a command or a node needs, built from the config: the chain backend, the
 * on-chain wallet (its key in INFERNET_HOME/wallet.key, apart from the node's libp2p identity) and,
 * when an LND URL is set, the Lightning client. Building it does no I/O: the chain is opened, the key
 * read (or created) and LND's macaroon read only when first used, so a command that needs none of
 * them (or a misconfigured Lightning that it does not use) never fails on them.
 */

/** Confirmation target of the fee estimate for a wallet send: about an hour. */
export const DEFAULT_FEE_TARGET_BLOCKS = 6;
/** Largest macaroon or TLS certificate file read (LND's are well under 4 KiB). */
export const MAX_LND_FILE_BYTES = 64 * 1024;

export interface PaymentsSetup {
  readonly network: ChainNetwork;
  /** The configured backend; opened on first access (ConfigError when bitcoind has no credentials). */
  readonly chain: Chain;
  /** Where the wallet's seed is (INFERNET_HOME/wallet.key). */
  readonly walletKeyPath: string;
  /** Whether the key file exists, without creating it. */
  hasWalletKey(): boolean;
  /** The wallet's key, created there (mode 0600) on first use; WalletKeyError when it cannot be read. */
  walletKey(): WalletKey;
  /** The on-chain wallet over `chain` (creates the key as `walletKey` does). */
  wallet(): Wallet;
  /**
   * The fee rate for a send: `satPerVbyte` when given, else the configured walletFeeRate, else the
   * chain's estimate for `targetBlocks` (a ChainError saying how to give one when it has none).
   */
  feeRate(options?: { satPerVbyte?: number; targetBlocks?: number; signal?: AbortSignal }): Promise<SatPerKvb>;
  /** The LND client when lndUrl is set; its files are read on first access (ConfigError when they cannot be). */
  readonly lnd: LndRest | undefined;
}

export function paymentsSetup(config: Config): PaymentsSetup {
  // Config's network and backend names are the chain's own: these assignments fail to compile if they drift.
  const network: ChainNetwork = config.chainNetwork;
  const walletKeyPath = join(config.home, WALLET_KEY_FILE);
  let chain: Chain | undefined;
  let key: WalletKey | undefined;
  let wallet: Wallet | undefined;
  let lnd: LndRest | undefined;

  const setup: PaymentsSetup = {
    network,
    walletKeyPath,
    get chain() {
      chain ??= openConfiguredChain(config, network);
      return chain;
    },
    hasWalletKey: () => existsSync(walletKeyPath),
    walletKey() {
      key ??= WalletKey.loadOrCreate(walletKeyPath, network).key;
      return key;
    },
    wallet() {
      wallet ??= new Wallet({ key: setup.walletKey(), chain: setup.chain });
      return wallet;
    },
    async feeRate(options = {}) {
      const given = options.satPerVbyte ?? (config.walletFeeRate > 0 ? config.walletFeeRate : undefined);
      if (given !== undefined) return satPerVbyteToKvb(given);
      try {
        return await setup.chain.feeRate(options.targetBlocks ?? DEFAULT_FEE_TARGET_BLOCKS, options.signal);
      } catch (err) {
        if (!(err instanceof ChainError) || err.reason !== "unavailable") throw err;
        throw new ChainError(err.message, {
          reason: "unavailable",
          status: err.status,
          hint: `give a fee rate in sat/vB (--fee-rate, or ${SETTINGS.walletFeeRate.env}); a fresh regtest chain has no fee history`,
          cause: err,
        });
      }
    },
    get lnd() {
      if (!config.lndUrl) return undefined;
      lnd ??= openLnd(config, network);
      return lnd;
    },
  };
  return setup;
}

function openConfiguredChain(config: Config, network: ChainNetwork): Chain {
  const url = config.chainUrl || undefined;
  if (config.chainBackend === "esplora") return openChain({ backend: "esplora", network, url });
  const user = config.bitcoindRpcUser;
  const password = config.bitcoindRpcPassword;
  if (Boolean(user) !== Boolean(password)) {
    throw new ConfigError(
      `bitcoind RPC ${user ? "user is set without a password" : "password is set without a user"}`,
      {
        hint: `set both ${SETTINGS.bitcoindRpcUser.env} and ${SETTINGS.bitcoindRpcPassword.env}, or neither and ${SETTINGS.bitcoindCookieFile.env}`,
      },
    );
  }
  if (!user && !config.bitcoindCookieFile) {
    throw new ConfigError("the chain backend is bitcoind but no RPC credentials are set", {
      hint: `set ${SETTINGS.bitcoindCookieFile.env} to bitcoind's .cookie file, or ${SETTINGS.bitcoindRpcUser.env} and ${SETTINGS.bitcoindRpcPassword.env}`,
    });
  }
  return openChain({
    backend: "bitcoind",
    network,
    url,
    ...(user ? { rpcUser: user, rpcPassword: password } : { rpcCookieFile: config.bitcoindCookieFile }),
  });
}

function openLnd(config: Config, network: ChainNetwork): LndRest {
  if (!config.lndMacaroonPath) {
    throw new ConfigError(`${SETTINGS.lndUrl.env} is set but no macaroon is`, {
      hint: `set ${SETTINGS.lndMacaroonPath.env} to LND's admin.macaroon (or one with invoice and offchain permissions)`,
    });
  }
  const macaroon = readLndFile(config.lndMacaroonPath, "macaroon", SETTINGS.lndMacaroonPath.env);
  if (macaroon.byteLength === 0) throw new ConfigError(`the LND macaroon ${config.lndMacaroonPath} is empty`);
  const tlsCertPem = config.lndTlsCertPath
    ? readLndFile(config.lndTlsCertPath, "TLS certificate", SETTINGS.lndTlsCertPath.env).toString("utf8")
    : undefined;
  return new LndRest({
    url: config.lndUrl,
    macaroonHex: macaroon.toString("hex"),
    network,
    ...(tlsCertPem ? { tlsCertPem } : {}),
  });
}

function readLndFile(path: string, what: string, env: string | undefined): Buffer {
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new Error("not a regular file");
    if (stat.size > MAX_LND_FILE_BYTES) throw new Error(`larger than ${MAX_LND_FILE_BYTES} bytes`);
    return readFileSync(path);
  } catch (cause) {
    throw new ConfigError(`cannot read the LND ${what} ${path}: ${errorMessage(cause)}`, {
      hint: `check ${env}`,
      cause,
    });
  }
}
