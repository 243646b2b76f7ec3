import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { Store } from "./db.ts";
import { MIGRATIONS, type Migration } from "./migrations.ts";

describe("store", () => {
  test("a new database is in WAL mode and migrated to the latest version", () => {
    using dir = tempDir();
    using store = Store.open(dir.path);
    expect(store.version()).toBe(MIGRATIONS.at(-1)!.version);
    const mode = store.db.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get();
    expect(mode?.journal_mode).toBe("wal");
    const tables = store.db
      .query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      .all()
      .map((r) => r.name);
    expect(tables).toEqual(expect.arrayContaining(["benchmarks", "calibrations", "model_files"]));
  });

  test("migrations apply once, in order, and data survives reopening", () => {
    using dir = tempDir();
    const path = join(dir.path, "t.db");
    const extra: Migration[] = [
      ...MIGRATIONS,
      { version: 1000, name: "test table", sql: "CREATE TABLE t (x INTEGER NOT NULL)" },
    ];
    {
      using store = Store.openFile(path, extra);
      store.db.query("INSERT INTO t (x) VALUES (?)").run(42);
    }
    using again = Store.openFile(path, extra);
    expect(again.version()).toBe(1000);
    expect(again.db.query<{ x: number }, []>("SELECT x FROM t").all()).toEqual([{ x: 42 }]);
  });

  test("a failing migration rolls back whole and leaves the version where it was", () => {
    using dir = tempDir();
    const path = join(dir.path, "t.db");
    const broken: Migration[] = [
      ...MIGRATIONS,
      { version: 1000, name: "half", sql: "CREATE TABLE ok (x INTEGER); CREATE TABLE ok (x INTEGER);" },
    ];
    expect(() => Store.openFile(path, broken)).toThrow();
    using store = Store.openFile(path);
    expect(store.version()).toBe(MIGRATIONS.at(-1)!.version);
    expect(store.db.query("SELECT name FROM sqlite_master WHERE name = 'ok'").get()).toBeNull();
  });

  test("a database from a newer Infernet is refused with a ConfigError", () => {
    using dir = tempDir();
    const path = join(dir.path, "t.db");
    {
      using store = Store.openFile(path);
      store.db.exec("PRAGMA user_version = 9999");
    }
    let error: unknown;
    try {
      Store.openFile(path);
    } catch (err) {
      error = err;
    }
    expect((error as Error).name).toBe("ConfigError");
    expect((error as Error).message).toMatch(/newer than this Infernet understands/);
  });
});
