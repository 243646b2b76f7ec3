import { expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { writeFileAtomic } from "./files.ts";

test("replaces the file whole, mode 0600 by default, leaving no temporary file", () => {
  using dir = tempDir();
  const path = join(dir.path, "state.json");
  writeFileSync(path, "old", { mode: 0o644 });
  writeFileAtomic(path, "new");
  expect(readFileSync(path, "utf8")).toBe("new");
  expect(statSync(path).mode & 0o777).toBe(0o600);
  expect(readdirSync(dir.path)).toEqual(["state.json"]);
});

test("a failed write throws and leaves the old file and no temporary file", () => {
  using dir = tempDir();
  // The target is a non-empty folder: the rename over it fails.
  const path = join(dir.path, "taken");
  mkdirSync(join(path, "inside"), { recursive: true });
  expect(() => writeFileAtomic(path, "data")).toThrow();
  expect(readdirSync(dir.path)).toEqual(["taken"]);
  expect(readdirSync(path)).toEqual(["inside"]);
});
