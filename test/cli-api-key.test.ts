import { expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { infernet } from "./helpers/cli.ts";
import { tempDir } from "./helpers/paths.ts";

/** `infernet api-key` on a fresh home: what it prints, what it keeps, how it refuses. */

test("create prints the secret once, keeps only its hash (0600); list shows limits and spend; revoke removes it", async () => {
  using home = tempDir();
  const at = { home: home.path };
  expect((await infernet(["api-key", "list"], at)).stdout).toContain("No API keys");
  const created = await infernet(["api-key", "create", "--name", "ci", "--rpm", "30", "--budget", "250sat"], at);
  expect(created.code).toBe(0);
  const secret = created.stdout.trim();
  expect(secret).toMatch(/^inf_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$/);
  expect(created.stderr).toContain("not shown again");
  const file = join(home.path, "api-keys.json");
  expect(statSync(file).mode & 0o777).toBe(0o600);
  expect(readFileSync(file, "utf8")).not.toContain(secret);
  const table = await infernet(["api-key", "list"], at);
  expect(table.stdout).toMatch(/ci\s+\S+\s+30\s+4\s+250 sats\s+0 sats\s+0/);
  const listed = JSON.parse((await infernet(["api-key", "list", "--json"], at)).stdout) as {
    keys: Record<string, unknown>[];
  };
  expect(listed.keys).toEqual([
    expect.objectContaining({ name: "ci", requestsPerMinute: 30, budgetSats: 250, spentSats: 0 }),
  ]);
  expect(listed.keys[0]).not.toHaveProperty("sha256");
  const id = listed.keys[0]!.id as string;
  const revoked = await infernet(["api-key", "revoke", "ci"], at);
  expect([revoked.code, revoked.stderr.trim()]).toEqual([0, `key ${id} (ci) revoked`]);
  expect((await infernet(["api-key", "list"], at)).stdout).toContain("No API keys");
});

test("bad actions and flags are one line and exit 2", async () => {
  using home = tempDir();
  const at = { home: home.path };
  for (const [args, message] of [
    [["api-key"], "say create, list or revoke"],
    [["api-key", "rotate"], 'unknown action "rotate"'],
    [["api-key", "create", "--rpm", "0"], "--rpm"],
    [["api-key", "create", "--budget", "lots"], "--budget"],
    [["api-key", "revoke"], "give the key's id"],
    [["api-key", "revoke", "nope"], "no key nope"],
  ] as const) {
    const r = await infernet([...args], at);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
  }
});
