import { expect, test } from "bun:test";
import { chmodSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { ENCRYPTION_KEY_FILE, loadOrCreateEncryptionKey } from "./key-file.ts";

test("the encryption key is made once with mode 0600, read back the same, refused when others can read it or it is malformed", () => {
  using dir = tempDir();
  const made = loadOrCreateEncryptionKey(dir.path);
  const path = join(dir.path, ENCRYPTION_KEY_FILE);
  expect(statSync(path).mode & 0o777).toBe(0o600);
  expect(loadOrCreateEncryptionKey(dir.path).publicKey).toEqual(made.publicKey);
  chmodSync(path, 0o644);
  expect(() => loadOrCreateEncryptionKey(dir.path)).toThrow("can be read by other users");
  writeFileSync(path, "short", { mode: 0o600 });
  chmodSync(path, 0o600);
  expect(() => loadOrCreateEncryptionKey(dir.path)).toThrow("is not a 32-byte X25519 key");
});
