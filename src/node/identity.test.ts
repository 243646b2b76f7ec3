import { describe, expect, test } from "bun:test";
import { chmodSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { tempDir } from "../../test/helpers/paths.ts";
import { IDENTITY_FILE, loadOrCreateIdentity } from "./identity.ts";

describe("node identity", () => {
  test("is created once with mode 0600 and gives the same peer id on every load", async () => {
    using dir = tempDir();
    const first = await loadOrCreateIdentity(dir.path);
    expect(first.type).toBe("Ed25519");
    expect(statSync(join(dir.path, IDENTITY_FILE)).mode & 0o777).toBe(0o600);
    const again = await loadOrCreateIdentity(dir.path);
    expect(peerIdFromPrivateKey(again).toString()).toBe(peerIdFromPrivateKey(first).toString());
  });

  test("a key file other users can read is refused, with the fix", async () => {
    using dir = tempDir();
    await loadOrCreateIdentity(dir.path);
    chmodSync(join(dir.path, IDENTITY_FILE), 0o644);
    const err = await loadOrCreateIdentity(dir.path).catch((e: unknown) => e as Error);
    expect((err as Error).name).toBe("ConfigError");
    expect((err as Error).message).toMatch(/can be read by other users \(mode 644\)/);
  });

  test("a file that is not a key is a clear error, not a new identity", async () => {
    using dir = tempDir();
    const path = join(dir.path, IDENTITY_FILE);
    writeFileSync(path, "not a key", { mode: 0o600 });
    const err = await loadOrCreateIdentity(dir.path).catch((e: unknown) => e as Error);
    expect((err as Error).name).toBe("ConfigError");
    expect((err as Error).message).toMatch(/is not an Ed25519 node key/);
  });
});
