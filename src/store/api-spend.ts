import type { Store } from "./db.ts";

/** What each API key has spent through the gateway (millisatoshis) and how many generations it ran. */
export interface KeySpend {
  spentMsat: number;
  requests: number;
}

export class ApiSpendStore {
  private readonly select;
  private readonly add;

  constructor(store: Store) {
    this.select = store.db.query<{ spent_msat: number; requests: number }, [string]>(
      "SELECT spent_msat, requests FROM api_spend WHERE key_id = ?",
    );
    this.add = store.db.query<unknown, [string, number, number]>(
      `INSERT INTO api_spend (key_id, spent_msat, requests, updated_at) VALUES (?1, ?2, 1, ?3)
       ON CONFLICT (key_id) DO UPDATE SET
         spent_msat = spent_msat + excluded.spent_msat, requests = requests + 1, updated_at = excluded.updated_at`,
    );
  }

  spent(keyId: string): KeySpend {
    const row = this.select.get(keyId);
    return { spentMsat: row?.spent_msat ?? 0, requests: row?.requests ?? 0 };
  }

  /** Records one finished generation's cost (written before the response ends). */
  charge(keyId: string, msat: number, now = Date.now()): void {
    if (!Number.isSafeInteger(msat) || msat < 0)
      throw new RangeError(`a charge must be a whole msat amount, got ${msat}`);
    this.add.run(keyId, msat, now);
  }
}
