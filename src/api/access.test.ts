import { expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiSpendStore } from "../store/api-spend.ts";
import { Store } from "../store/db.ts";
import { GatewayAccess, KEYS_RELOAD_MS, MAX_CONCURRENT_GENERATIONS } from "./access.ts";
import { createKey, keysPath, matchKey, readKeys, revokeKey } from "./keys.ts";
import type { ApiError } from "./openai.ts";

/** A temporary home with a real SQLite store; removed on dispose. */
function home() {
  const dir = mkdtempSync(join(tmpdir(), "infernet-keys-"));
  const store = Store.open(dir);
  return {
    dir,
    spend: new ApiSpendStore(store),
    [Symbol.dispose]: () => {
      store.db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const bearer = (secret?: string) =>
  new Request("http://127.0.0.1/v1/models", secret ? { headers: { authorization: `Bearer ${secret}` } } : {});

function statusOf(f: () => unknown): { status: number; code: string | null } {
  try {
    f();
  } catch (e) {
    return e as ApiError;
  }
  throw new Error("admitted");
}

test("keys: the file is 0600 and holds hashes only; a secret matches its key, a wrong or revoked one none", () => {
  using h = home();
  const { key, secret } = createKey(h.dir, { name: "laptop", requestsPerMinute: 5, concurrency: 2, budgetSats: 7 });
  expect(statSync(keysPath(h.dir)).mode & 0o777).toBe(0o600);
  // The random part (after "inf_<id>_") is nowhere in the file.
  expect(readFileSync(keysPath(h.dir), "utf8")).not.toContain(secret.slice("inf_00000000_".length));
  const keys = readKeys(h.dir);
  expect(keys).toEqual([key]);
  expect(matchKey(keys, secret)?.id).toBe(key.id);
  expect(matchKey(keys, `${secret.slice(0, -1)}${secret.endsWith("A") ? "B" : "A"}`)).toBeUndefined();
  expect(matchKey(keys, "sk-anything")).toBeUndefined();
  expect(revokeKey(h.dir, "laptop")?.id).toBe(key.id);
  expect(matchKey(readKeys(h.dir), secret)).toBeUndefined();
  expect(revokeKey(h.dir, key.id)).toBeUndefined();
});

test("keys: a file others can read, or one that is not a keys file, is refused with a clear message", () => {
  using h = home();
  createKey(h.dir);
  chmodSync(keysPath(h.dir), 0o644);
  expect(() => readKeys(h.dir)).toThrow(/can be read by other users/);
  chmodSync(keysPath(h.dir), 0o600);
  Bun.write(keysPath(h.dir), "{nope");
  chmodSync(keysPath(h.dir), 0o600);
  expect(() => readKeys(h.dir)).toThrow(/not valid JSON/);
});

test("a required key: none or a wrong one is a 401; off loopback's open mode a dummy key is no key", () => {
  using h = home();
  const { secret } = createKey(h.dir);
  const strict = new GatewayAccess({ home: h.dir, requireKey: true, spend: h.spend });
  expect(statusOf(() => strict.authenticate(bearer()))).toMatchObject({ status: 401, code: "invalid_api_key" });
  expect(statusOf(() => strict.authenticate(bearer("inf_00000000_xxxxxxxxxxxxxxxxxxxxxxxx")))).toMatchObject({
    status: 401,
  });
  expect(strict.authenticate(bearer(secret))?.id).toBe(readKeys(h.dir)[0]!.id);
  const open = new GatewayAccess({ home: h.dir, requireKey: false, spend: h.spend });
  expect(open.authenticate(bearer("unused-on-loopback"))).toBeUndefined();
});

test("a revoked key stops working on a running gateway once the file is looked at again", () => {
  using h = home();
  let now = 1_000_000;
  const { key, secret } = createKey(h.dir);
  const access = new GatewayAccess({ home: h.dir, requireKey: true, spend: h.spend, now: () => now });
  expect(access.authenticate(bearer(secret))?.id).toBe(key.id);
  revokeKey(h.dir, key.id);
  now += KEYS_RELOAD_MS;
  expect(statusOf(() => access.authenticate(bearer(secret))).status).toBe(401);
});

test("rate: a key's bucket holds a minute's requests and refills evenly; concurrency counts held tickets", () => {
  using h = home();
  let now = 0;
  const { key } = createKey(h.dir, { requestsPerMinute: 2, concurrency: 1 });
  const access = new GatewayAccess({ home: h.dir, requireKey: true, spend: h.spend, now: () => now });
  const first = access.admit(key);
  expect(statusOf(() => access.admit(key))).toMatchObject({ status: 429, code: "concurrency_limit_exceeded" });
  first[Symbol.dispose]();
  first[Symbol.dispose](); // released once only
  access.admit(key)[Symbol.dispose]();
  expect(statusOf(() => access.admit(key))).toMatchObject({ status: 429, code: "rate_limit_exceeded" });
  now += 30_000; // half a minute: one request back
  access.admit(key)[Symbol.dispose]();
  expect(statusOf(() => access.admit(key)).code).toBe("rate_limit_exceeded");
});

test("budget: the worst case is reserved at the provider's price, what was generated is charged in msat", () => {
  using h = home();
  const { key } = createKey(h.dir, { budgetSats: 3, requestsPerMinute: 100, concurrency: 10 });
  const access = new GatewayAccess({ home: h.dir, requireKey: true, spend: h.spend });
  // 10 sats per 1,000 tokens = 10 msat a token; 100 tokens at most = 1,000 msat reserved.
  const a = access.admit(key);
  a.priced(10, 100);
  const b = access.admit(key);
  b.priced(10, 100);
  const c = access.admit(key);
  c.priced(10, 100);
  // 3,000 msat reserved: a fourth cannot be admitted at all.
  expect(statusOf(() => access.admit(key))).toMatchObject({ status: 402, code: "insufficient_quota" });
  a.charge(37);
  a.charge(50); // charged once
  a[Symbol.dispose]();
  b.charge(0);
  b[Symbol.dispose]();
  expect(h.spend.spent(key.id)).toEqual({ spentMsat: 370, requests: 2 });
  // 370 spent + 1,000 held by c: 1,630 msat left, so one more 1,000 fits and a second does not.
  const d = access.admit(key);
  d.priced(10, 100);
  const e = access.admit(key);
  expect(statusOf(() => e.priced(10, 100))).toMatchObject({ status: 402 });
  e.charge(0);
  for (const t of [c, d, e]) t[Symbol.dispose]();
  // The refused one is not a request that ran.
  expect(h.spend.spent(key.id).requests).toBe(2);
});

test("a request without a key is held to the gateway-wide cap on generations in flight", () => {
  using h = home();
  const access = new GatewayAccess({ home: h.dir, requireKey: false, spend: h.spend });
  const held = Array.from({ length: MAX_CONCURRENT_GENERATIONS }, () => access.admit(undefined));
  expect(statusOf(() => access.admit(undefined))).toMatchObject({ status: 429, code: "busy" });
  held[0]![Symbol.dispose]();
  held[0] = access.admit(undefined);
  for (const t of held) t[Symbol.dispose]();
});
