import { Database } from "bun:sqlite";
import { join } from "node:path";
import { ConfigError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import { MIGRATIONS, type Migration } from "./migrations.ts";

const log = logger("store");

/** How long a writer waits for another process's lock before failing. */
export const BUSY_TIMEOUT_MS = 5_000;

/** The node's SQLite database (`INFERNET_HOME/infernet.db`), WAL mode, migrated on open. */
export class Store implements Disposable {
  readonly db: Database;

  private constructor(db: Database) {
    this.db = db;
  }

  static open(home: string, migrations: readonly Migration[] = MIGRATIONS): Store {
    return Store.openFile(join(home, "infernet.db"), migrations);
  }

  static openFile(path: string, migrations: readonly Migration[] = MIGRATIONS): Store {
    let db: Database;
    try {
      db = new Database(path, { create: true, strict: true });
    } catch (cause) {
      throw new ConfigError(`cannot open database ${path}`, { hint: "check INFERNET_HOME permissions", cause });
    }
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA foreign_keys = ON");
    db.exec("PRAGMA synchronous = NORMAL");
    const store = new Store(db);
    try {
      store.migrate(migrations);
    } catch (err) {
      db.close();
      throw err;
    }
    return store;
  }

  /** Current schema version (0 for a new database). */
  version(): number {
    const row = this.db.query<{ user_version: number }, []>("PRAGMA user_version").get();
    return row?.user_version ?? 0;
  }

  private migrate(migrations: readonly Migration[]): void {
    const current = this.version();
    const latest = migrations.at(-1)?.version ?? 0;
    if (current > latest) {
      throw new ConfigError(`database schema version ${current} is newer than this Infernet understands (${latest})`, {
        hint: "upgrade Infernet, or point INFERNET_HOME at another directory",
      });
    }
    for (const m of migrations) {
      if (m.version <= current) continue;
      this.db
        .transaction(() => {
          this.db.exec(m.sql);
          this.db.exec(`PRAGMA user_version = ${m.version}`);
        })
        .immediate();
      log.info("migrated", { version: m.version, name: m.name });
    }
  }

  close(): void {
    this.db.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
