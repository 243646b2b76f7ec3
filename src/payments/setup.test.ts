import { expect, test } from "bun:test";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fakeEsplora } from "../../test/helpers/fake-esplora.ts";
import { FakeLnd } from "../../test/helpers/fake-lnd.ts";
import { tempDir } from "../../test/helpers/paths.ts";
import { CHAIN_BACKEND_NAMES, CHAIN_NETWORK_NAMES, loadConfig } from "../config/index.ts";
import { BitcoindChain, CHAIN_BACKENDS, CHAIN_NETWORKS, EsploraChain } from "./chain/index.ts";
import { paymentsSetup } from "./setup.ts";

// The chain here is test/helpers/fake-esplora.ts, a FAKE Esplora (none can run here) speaking its
// REST wire format over a tiny in-memory chain that checks signatures; LND is test/helpers/fake-lnd.ts.

/** An unused local port: connections to it are refused at once. */
const CLOSED_URL = "http://127.0.0.1:9";

function configAt(home: string, env: Record<string, string> = {}) {
  return loadConfig({ env: { INFERNET_HOME: home, ...env } });
}

async function rejected(p: Promise<unknown>): Promise<Error & { reason?: string; hint?: string }> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

function thrown(f: () => unknown): Error & { hint?: string } {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected an error");
}

test("the config's network and backend names are the chain's", () => {
  expect([...CHAIN_NETWORK_NAMES].sort()).toEqual([...CHAIN_NETWORKS].sort());
  expect([...CHAIN_BACKEND_NAMES].sort()).toEqual([...CHAIN_BACKENDS].sort());
});

test("building it touches nothing; the key is created 0600 on first use and loaded after", async () => {
  using home = tempDir();
  await using esplora = fakeEsplora();
  const setup = paymentsSetup(configAt(home.path, { INFERNET_CHAIN_URL: esplora.url }));
  expect(setup.network).toBe("regtest");
  expect(setup.walletKeyPath).toBe(join(home.path, "wallet.key"));
  expect(setup.hasWalletKey()).toBe(false);
  expect(setup.lnd).toBeUndefined();
  expect(existsSync(setup.walletKeyPath)).toBe(false);
  expect(esplora.requests).toEqual([]);

  const key = setup.walletKey();
  expect(statSync(setup.walletKeyPath).mode & 0o777).toBe(0o600);
  expect(setup.walletKey()).toBe(key);
  const again = paymentsSetup(configAt(home.path, { INFERNET_CHAIN_URL: esplora.url }));
  expect(again.hasWalletKey()).toBe(true);
  expect(again.walletKey().fingerprint).toBe(key.fingerprint);

  const wallet = setup.wallet();
  expect(wallet.chain).toBeInstanceOf(EsploraChain);
  const address = await wallet.receiveAddress();
  expect(address).toStartWith("bcrt1q");
  esplora.ledger.fund(address, 50_000n);
  esplora.ledger.fund(address, 7_000n, false);
  expect(await again.wallet().balance()).toEqual({ confirmed: 50_000n, unconfirmed: 7_000n });
});

test("the configured network picks the addresses; a key file others can read is refused", () => {
  using home = tempDir();
  const signet = paymentsSetup(configAt(home.path, { INFERNET_CHAIN_NETWORK: "signet" }));
  expect(signet.walletKey().receive(0).address).toStartWith("tb1q");
  const mainnet = paymentsSetup(configAt(home.path, { INFERNET_CHAIN_NETWORK: "mainnet" }));
  expect(mainnet.walletKey().receive(0).address).toStartWith("bc1q");
  expect(mainnet.chain.network).toBe("mainnet");

  using other = tempDir();
  writeFileSync(join(other.path, "wallet.key"), `${"ab".repeat(32)}\n`, { mode: 0o644 });
  const e = thrown(() => paymentsSetup(configAt(other.path)).walletKey());
  expect(e.name).toBe("WalletKeyError");
  expect(e.hint).toContain("chmod 600");
});

test("fee rate: the caller's, else the configured one, else the chain's estimate (none on regtest: says how)", async () => {
  using home = tempDir();
  await using esplora = fakeEsplora();
  const plain = paymentsSetup(configAt(home.path, { INFERNET_CHAIN_URL: esplora.url }));
  const e = await rejected(plain.feeRate());
  expect([e.name, e.reason]).toEqual(["ChainError", "unavailable"]);
  expect(e.hint).toContain("INFERNET_WALLET_FEE_RATE");
  esplora.ledger.feeEstimates = { "1": 20, "6": 4.2, "144": 1 };
  expect(await plain.feeRate()).toBe(4200n);
  expect(await plain.feeRate({ satPerVbyte: 2.5 })).toBe(2500n);

  const configured = paymentsSetup(
    configAt(home.path, { INFERNET_CHAIN_URL: esplora.url, INFERNET_WALLET_FEE_RATE: "3" }),
  );
  expect(await configured.feeRate()).toBe(3000n);
  expect(await configured.feeRate({ satPerVbyte: 1 })).toBe(1000n);

  const unreachable = paymentsSetup(configAt(home.path, { INFERNET_CHAIN_URL: CLOSED_URL }));
  const down = await rejected(unreachable.feeRate());
  expect([down.name, down.reason]).toEqual(["ChainError", "unreachable"]);
});

test("bitcoind: credentials checked when the chain is first used, not before", () => {
  using home = tempDir();
  const at = (env: Record<string, string>) =>
    paymentsSetup(configAt(home.path, { INFERNET_CHAIN_BACKEND: "bitcoind", ...env }));
  const none = at({});
  const missing = thrown(() => none.chain);
  expect(missing.name).toBe("ConfigError");
  expect(missing.hint).toContain("INFERNET_BITCOIND_COOKIE");
  expect(thrown(() => at({ INFERNET_BITCOIND_RPC_USER: "alice" }).chain).message).toMatch(
    /user is set without a password/,
  );
  const withUser = at({ INFERNET_BITCOIND_RPC_USER: "alice", INFERNET_BITCOIND_RPC_PASSWORD: "pw" }).chain;
  expect(withUser).toBeInstanceOf(BitcoindChain);
  expect((withUser as BitcoindChain).url).toBe("http://127.0.0.1:18443");
  const withCookie = at({ INFERNET_BITCOIND_COOKIE: join(home.path, ".cookie"), INFERNET_CHAIN_URL: CLOSED_URL });
  expect((withCookie.chain as BitcoindChain).url).toBe(CLOSED_URL);
});

test("lnd: off without a URL; its files read on first use, refused with the setting to fix", async () => {
  using home = tempDir();
  await using node = new FakeLnd();
  const at = (env: Record<string, string>) =>
    paymentsSetup(configAt(home.path, { INFERNET_LND_URL: node.url, ...env }));
  const noMacaroon = at({});
  const e = thrown(() => noMacaroon.lnd);
  expect(e.name).toBe("ConfigError");
  expect(e.hint).toContain("INFERNET_LND_MACAROON");
  const missing = thrown(() => at({ INFERNET_LND_MACAROON: join(home.path, "nope.macaroon") }).lnd);
  expect(missing.message).toMatch(/cannot read the LND macaroon .*nope\.macaroon/);

  const macaroon = join(home.path, "admin.macaroon");
  writeFileSync(macaroon, Buffer.from(node.macaroonHex, "hex"));
  const lnd = at({ INFERNET_LND_MACAROON: macaroon }).lnd;
  expect(lnd).toBeDefined();
  expect((await lnd?.getInfo())?.pubkey).toBe(node.pubkey);
});
