import { ConfigError } from "../../util/errors.ts";
import { BitcoindChain } from "./bitcoind.ts";
import type { Chain } from "./chain.ts";
import { EsploraChain } from "./esplora.ts";
import type { ChainNetwork } from "./network.ts";

export * from "./bitcoind.ts";
export * from "./chain.ts";
export * from "./esplora.ts";
export * from "./network.ts";

export const CHAIN_BACKENDS = ["esplora", "bitcoind"] as const;
export type ChainBackend = (typeof CHAIN_BACKENDS)[number];

/** What the config gives to pick and reach a chain backend (see the config keys in the payments docs). */
export interface ChainOptions {
  backend: ChainBackend;
  network: ChainNetwork;
  /** Esplora base URL or bitcoind RPC URL; default per network. */
  url?: string;
  /** bitcoind: rpcuser/rpcpassword, or else the cookie file. */
  rpcUser?: string;
  rpcPassword?: string;
  rpcCookieFile?: string;
  timeoutMs?: number;
}

/** The configured backend behind the one `Chain` interface. */
export function openChain(options: ChainOptions): Chain {
  const { network, url, timeoutMs } = options;
  if (options.backend === "esplora") return new EsploraChain({ network, url, timeoutMs });
  if (options.rpcUser && options.rpcPassword) {
    return new BitcoindChain({
      network,
      url,
      timeoutMs,
      auth: { user: options.rpcUser, password: options.rpcPassword },
    });
  }
  if (options.rpcCookieFile)
    return new BitcoindChain({ network, url, timeoutMs, auth: { cookieFile: options.rpcCookieFile } });
  throw new ConfigError("bitcoind needs RPC credentials", {
    hint: "set the RPC user and password, or the path of bitcoind's .cookie file",
  });
}
