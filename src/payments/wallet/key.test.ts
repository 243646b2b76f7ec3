import { expect, test } from "bun:test";
import { pbkdf2Sync } from "node:crypto";
import { chmodSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as ecc from "@bitcoinerlab/secp256k1";
import { BIP32Factory } from "bip32";
import { tempDir } from "../../../test/helpers/paths.ts";
import { WALLET_KEY_FILE, WalletKey, type WalletKeyError } from "./key.ts";

/**
 * BIP84's published test vector. Its seed comes from a BIP39 mnemonic; BIP39's seed is only
 * PBKDF2-HMAC-SHA512(mnemonic, "mnemonic" + passphrase, 2048 rounds, 64 bytes), so node:crypto derives
 * it without a BIP39 package (the word list is needed only to make or check mnemonics, not here).
 */
const BIP84_MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const bip84Seed = () => pbkdf2Sync(BIP84_MNEMONIC.normalize("NFKD"), "mnemonic", 2048, 64, "sha512");

function thrown(f: () => unknown): WalletKeyError {
  try {
    f();
  } catch (err) {
    return err as WalletKeyError;
  }
  throw new Error("expected a throw");
}

test("BIP84 test vector: receive and change addresses and public keys (m/84'/0'/0'/{0,1}/i)", () => {
  const seed = bip84Seed();
  expect(seed.toString("hex")).toStartWith("5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc1");
  const key = WalletKey.fromSeed(seed, "mainnet");
  const r0 = key.receive(0);
  expect(r0.path).toBe("m/84'/0'/0'/0/0");
  expect(r0.address).toBe("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu");
  expect(Buffer.from(r0.publicKey).toString("hex")).toBe(
    "0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c",
  );
  expect(key.receive(1).address).toBe("bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g");
  expect(key.change(0).address).toBe("bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el");
  expect(Buffer.from(key.change(0).publicKey).toString("hex")).toBe(
    "03025324888e429ab8e3dbaf1f7802648b9cd01e9b418485c5fa4c1b9b5700e1a6",
  );
});

test("test networks use coin type 1; channel keys are on their own hardened branch", () => {
  const key = WalletKey.fromSeed(bip84Seed(), "regtest");
  expect(key.receive(0).path).toBe("m/84'/1'/0'/0/0");
  expect(key.receive(0).address).toStartWith("bcrt1q");
  expect(WalletKey.fromSeed(bip84Seed(), "signet").receive(0).address).toStartWith("tb1q");
  const channel = key.channelKey(3);
  expect(channel.path).toBe("m/1017'/1'/0'/0/3");
  const own = BIP32Factory(ecc).fromSeed(bip84Seed()).derivePath("m/1017'/1'/0'/0/3");
  expect(Buffer.from(channel.publicKey).equals(own.publicKey)).toBe(true);
  expect(thrown(() => key.receive(2 ** 31)).name).toBe("WalletKeyError");
  expect(thrown(() => key.receive(-1)).name).toBe("WalletKeyError");
});

test("create writes a 0600 hex seed, load reads it back, an existing key is never replaced", () => {
  using dir = tempDir();
  const path = join(dir.path, "keys", WALLET_KEY_FILE);
  const made = WalletKey.create(path, "regtest");
  expect(statSync(path).mode & 0o777).toBe(0o600);
  const text = readFileSync(path, "utf8");
  expect(text).toMatch(/^[0-9a-f]{64}\n$/);

  const loaded = WalletKey.load(path, "regtest");
  expect(loaded.receive(5).address).toBe(made.receive(5).address);
  expect(loaded.fingerprint).toBe(made.fingerprint);

  const again = thrown(() => WalletKey.create(path, "regtest"));
  expect(again.name).toBe("WalletKeyError");
  expect(again.message).toContain("already exists");
  expect(readFileSync(path, "utf8")).toBe(text);

  const { key, created } = WalletKey.loadOrCreate(path, "regtest");
  expect([created, key.fingerprint]).toEqual([false, made.fingerprint]);
  const fresh = WalletKey.loadOrCreate(join(dir.path, "other.key"), "regtest");
  expect(fresh.created).toBe(true);
  expect(fresh.key.fingerprint).not.toBe(made.fingerprint);
});

test("a key file others can read is refused with a chmod hint; raw bytes load; garbage does not", () => {
  using dir = tempDir();
  const path = join(dir.path, WALLET_KEY_FILE);
  WalletKey.create(path, "regtest");
  chmodSync(path, 0o644);
  const open = thrown(() => WalletKey.load(path, "regtest"));
  expect(open.name).toBe("WalletKeyError");
  expect(open.message).toContain("other users");
  expect(open.hint).toBe(`chmod 600 ${path}`);
  chmodSync(path, 0o640);
  expect(thrown(() => WalletKey.load(path, "regtest")).hint).toBe(`chmod 600 ${path}`);

  const raw = join(dir.path, "raw.key");
  const seed = bip84Seed().subarray(0, 32);
  writeFileSync(raw, seed, { mode: 0o600 });
  expect(WalletKey.load(raw, "regtest").receive(0).address).toBe(
    WalletKey.fromSeed(seed, "regtest").receive(0).address,
  );

  const bad = join(dir.path, "bad.key");
  writeFileSync(bad, "not a seed", { mode: 0o600 });
  expect(thrown(() => WalletKey.load(bad, "regtest")).name).toBe("WalletKeyError");
  expect(thrown(() => WalletKey.load(join(dir.path, "missing.key"), "regtest")).message).toContain("cannot read");
});

test("neither the seed nor a private key shows in JSON, strings or inspect", () => {
  const seed = bip84Seed();
  const key = WalletKey.fromSeed(seed, "regtest");
  const signer = key.receive(0);
  const priv = Buffer.from(BIP32Factory(ecc).fromSeed(seed).derivePath(signer.path).privateKey ?? []).toString("hex");
  expect(priv).toHaveLength(64);
  const secrets = [seed.toString("hex"), priv];
  const shown = [
    JSON.stringify(key),
    JSON.stringify({ signer }),
    String(key),
    String(signer),
    Bun.inspect(key),
    Bun.inspect(signer),
    Bun.inspect({ nested: [key, signer] }),
    JSON.stringify(Object.entries(signer)),
  ];
  for (const text of shown) for (const secret of secrets) expect(text).not.toContain(secret);
  expect(JSON.parse(JSON.stringify(signer))).toEqual({
    path: signer.path,
    publicKey: Buffer.from(signer.publicKey).toString("hex"),
  });
});
