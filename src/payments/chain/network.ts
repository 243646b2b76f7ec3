import { type Network, networks } from "bitcoinjs-lib";
import { ConfigError } from "../../util/errors.ts";

/**
 * The Bitcoin networks Infernet can pay on. `regtest` is the default for development: coins there are
 * free and blocks are mined on demand, so nothing is lost while the payment code is young.
 */
export const CHAIN_NETWORKS = ["regtest", "signet", "testnet", "mainnet"] as const;
export type ChainNetwork = (typeof CHAIN_NETWORKS)[number];

export const DEFAULT_CHAIN_NETWORK: ChainNetwork = "regtest";

/** The name checked: a typo in a config file must not quietly select another network. */
export function chainNetwork(name: string): ChainNetwork {
  const found = CHAIN_NETWORKS.find((n) => n === name);
  if (!found) {
    throw new ConfigError(`"${name.slice(0, 32)}" is not a Bitcoin network`, {
      hint: `use one of ${CHAIN_NETWORKS.join(", ")}`,
    });
  }
  return found;
}

/**
 * bitcoinjs parameters for a network. Signet shares testnet's address and key prefixes (BIP325:
 * "tb" bech32, testnet base58 versions), so bitcoinjs has no separate object for it.
 */
export function bitcoinNetwork(network: ChainNetwork): Network {
  switch (network) {
    case "mainnet":
      return networks.bitcoin;
    case "regtest":
      return networks.regtest;
    case "signet":
    case "testnet":
      return networks.testnet;
  }
}

/** SLIP-44 coin type for BIP44/84 paths: 0 on mainnet, 1 on every test network (BIP44). */
export function coinType(network: ChainNetwork): 0 | 1 {
  return network === "mainnet" ? 0 : 1;
}

/**
 * Public Esplora servers per network. Regtest has none: it is the port electrs' Esplora HTTP server
 * listens on for regtest by default (Blockstream/electrs `--http-addr`, 3002 for regtest).
 */
export const DEFAULT_ESPLORA_URLS: Record<ChainNetwork, string> = {
  mainnet: "https://blockstream.info/api",
  testnet: "https://blockstream.info/testnet/api",
  signet: "https://mempool.space/signet/api",
  regtest: "http://127.0.0.1:3002",
};

/** Bitcoin Core's default RPC ports (chainparamsbase.cpp). */
export const DEFAULT_BITCOIND_URLS: Record<ChainNetwork, string> = {
  mainnet: "http://127.0.0.1:8332",
  testnet: "http://127.0.0.1:18332",
  signet: "http://127.0.0.1:38332",
  regtest: "http://127.0.0.1:18443",
};

/** Where bitcoind writes its `.cookie` under its data directory, per network (Bitcoin Core's layout). */
export const BITCOIND_COOKIE_SUBDIRS: Record<ChainNetwork, string> = {
  mainnet: "",
  testnet: "testnet3",
  signet: "signet",
  regtest: "regtest",
};
