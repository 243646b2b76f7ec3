import { expect, test } from "bun:test";
import { infernet } from "./helpers/cli.ts";
import { tempDir } from "./helpers/paths.ts";

test("infernet config shows every setting and where it comes from, but never a secret's value", async () => {
  using home = tempDir();
  const env = { INFERNET_BITCOIND_RPC_PASSWORD: "hunter2-not-for-eyes", INFERNET_CHAIN_NETWORK: "signet" };
  const text = await infernet(["config"], { home: home.path, env });
  expect(text.code).toBe(0);
  expect(text.stdout).toMatch(/chainNetwork\s+signet\s+INFERNET_CHAIN_NETWORK/);
  expect(text.stdout).toMatch(/bitcoindRpcPassword\s+\(set, hidden\)/);
  const json = await infernet(["config", "--json"], { home: home.path, env });
  expect(JSON.parse(json.stdout)).toMatchObject({ chainNetwork: "signet", bitcoindRpcPassword: "(set, hidden)" });
  for (const out of [text.stdout, text.stderr, json.stdout, json.stderr]) expect(out).not.toContain("hunter2");
});
