import { statSync } from "node:fs";
import type { ApiSpendStore } from "../store/api-spend.ts";
import { type ApiKey, keysPath, matchKey, readKeys } from "./keys.ts";
import { ApiError } from "./openai.ts";

/**
 * Who may use the gateway and how much: the bearer key (required off loopback, or with
 * --require-key), each key's request rate (a token bucket), its concurrent generations and its spend
 * budget, plus a gateway-wide cap on generations in flight. A generation is admitted, then told its
 * price when the network picks a provider (its worst case is reserved against the budget), then
 * charged what it used. Spend is counted in msat in SQLite (`api_spend`) as the cost reports price it:
 * a price in sats per 1,000 tokens is msat per token.
 */

/** Generations in flight through one gateway, all keys together. */
export const MAX_CONCURRENT_GENERATIONS = 256;
/** How often the keys file is looked at again (a revoked key stops working within this). */
export const KEYS_RELOAD_MS = 1_000;

export interface AccessOptions {
  /** The node's home (its `api-keys.json`). */
  home: string;
  /** Refuse requests without a valid key. */
  requireKey: boolean;
  spend: ApiSpendStore;
  now?: () => number;
}

/** One admitted generation's hold on its key's limits. */
export interface Ticket extends Disposable {
  readonly key: ApiKey | undefined;
  /**
   * The provider's price is known: the most this generation can cost (`maxTokens` generated at that price) is
   * reserved, or 402 when the key's budget cannot cover it.
   */
  priced(satsPer1kTokens: number, maxTokens: number): void;
  /** The tokens it generated; charged to the key once, at the price. */
  charge(tokens: number): void;
}

export class GatewayAccess {
  private keys: ApiKey[] = [];
  private keysCheckedAt = Number.NEGATIVE_INFINITY;
  private keysVersion: string | undefined;
  private inFlight = 0;
  private readonly perKey = new Map<string, { active: number; tokens: number; at: number; reservedMsat: number }>();
  private readonly now: () => number;

  constructor(private readonly options: AccessOptions) {
    this.now = options.now ?? Date.now;
    this.reload();
  }

  /** The request's key: 401 when one is required and missing or wrong; else the key it names, if valid. */
  authenticate(req: Request): ApiKey | undefined {
    this.reload();
    const header = req.headers.get("authorization") ?? "";
    const secret = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    const key = secret ? matchKey(this.keys, secret) : undefined;
    if (!key && this.options.requireKey) {
      throw new ApiError(
        401,
        secret
          ? "the API key is not valid (unknown or revoked)"
          : "an API key is required: Authorization: Bearer <key>",
        "invalid_request_error",
        null,
        "invalid_api_key",
      );
    }
    return key;
  }

  /** Admits one generation, or 429 (busy, over the key's rate or concurrency) / 402 (budget spent). */
  admit(key: ApiKey | undefined): Ticket {
    if (this.inFlight >= MAX_CONCURRENT_GENERATIONS) {
      throw new ApiError(
        429,
        `the gateway is running ${MAX_CONCURRENT_GENERATIONS} generations; try again shortly`,
        "rate_limit_error",
        null,
        "busy",
      );
    }
    const state = key ? this.stateOf(key) : undefined;
    if (key && state) {
      this.refill(key, state);
      if (state.active >= key.concurrency) {
        throw new ApiError(
          429,
          `this key runs at most ${key.concurrency} generations at once`,
          "rate_limit_error",
          null,
          "concurrency_limit_exceeded",
        );
      }
      if (state.tokens < 1) {
        throw new ApiError(
          429,
          `this key is limited to ${key.requestsPerMinute} requests per minute`,
          "rate_limit_error",
          null,
          "rate_limit_exceeded",
        );
      }
      if (key.budgetSats !== undefined && this.committedMsat(key, state) >= key.budgetSats * 1000) {
        throw overBudget(key);
      }
      state.tokens -= 1;
      state.active += 1;
    }
    this.inFlight += 1;
    let reserved = 0;
    let price = 0;
    let charged = false;
    let released = false;
    return {
      key,
      priced: (satsPer1kTokens, maxTokens) => {
        price = satsPer1kTokens;
        if (!key || !state) return;
        state.reservedMsat -= reserved;
        reserved = Math.ceil(maxTokens * satsPer1kTokens);
        if (key.budgetSats !== undefined && this.committedMsat(key, state) + reserved > key.budgetSats * 1000) {
          reserved = 0;
          // Refused before its first token: not a request that ran, nothing to charge.
          charged = true;
          throw overBudget(key);
        }
        state.reservedMsat += reserved;
      },
      charge: (tokens) => {
        if (charged || !key) return;
        charged = true;
        this.options.spend.charge(key.id, Math.ceil(tokens * price));
      },
      [Symbol.dispose]: () => {
        if (released) return;
        released = true;
        this.inFlight -= 1;
        if (state) {
          state.active -= 1;
          state.reservedMsat -= reserved;
        }
      },
    };
  }

  private committedMsat(key: ApiKey, state: { reservedMsat: number }): number {
    return this.options.spend.spent(key.id).spentMsat + state.reservedMsat;
  }

  private stateOf(key: ApiKey) {
    let s = this.perKey.get(key.id);
    if (!s) {
      s = { active: 0, tokens: key.requestsPerMinute, at: this.now(), reservedMsat: 0 };
      this.perKey.set(key.id, s);
    }
    return s;
  }

  /** The token bucket: `requestsPerMinute` requests at once, refilled evenly over a minute. */
  private refill(key: ApiKey, s: { tokens: number; at: number }): void {
    const now = this.now();
    s.tokens = Math.min(key.requestsPerMinute, s.tokens + ((now - s.at) / 60_000) * key.requestsPerMinute);
    s.at = now;
  }

  private reload(): void {
    const now = this.now();
    if (now - this.keysCheckedAt < KEYS_RELOAD_MS) return;
    this.keysCheckedAt = now;
    // The file is replaced whole (a rename), so a change shows as a new inode, size or time.
    let version = "";
    try {
      const st = statSync(keysPath(this.options.home));
      version = `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      // No file: no keys.
    }
    if (version === this.keysVersion) return;
    this.keysVersion = version;
    this.keys = version ? readKeys(this.options.home) : [];
  }

  /** Keys in the file now (for refusing to listen off loopback without one). */
  keyCount(): number {
    this.reload();
    return this.keys.length;
  }
}

function overBudget(key: ApiKey): ApiError {
  return new ApiError(
    402,
    `this key's budget of ${key.budgetSats} sats is spent (see \`infernet api-key list\`)`,
    "insufficient_quota",
    null,
    "insufficient_quota",
  );
}
