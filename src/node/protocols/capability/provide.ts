import type { SingleKadDHT } from "@libp2p/kad-dht";
import type { CID } from "multiformats/cid";
import { errorMessage } from "../../../util/errors.ts";
import { logger } from "../../../util/logger.ts";

/**
 * DHT provider records for what a node offers: one key per served model (see `modelCid`), so "who
 * serves model X" is one lookup, and the aggregator key (see `aggregatorCid`) on an aggregator. A
 * provide that reached no peer (the routing table was still empty) is retried with backoff while the
 * node has connections, and on the next identified peer.
 */

/** One provide round (all keys) may take this long. */
export const PROVIDE_TIMEOUT_MS = 30_000;
/** First retry of a provide that reached no peer; doubles up to PROVIDE_RETRY_MAX_MS. */
export const PROVIDE_RETRY_MS = 250;
export const PROVIDE_RETRY_MAX_MS = 10_000;

const log = logger("node:capability");

export interface KeyProviderInit {
  dht: () => SingleKadDHT;
  /** Whether a retry can succeed now (the node has at least one connection). */
  connected: () => boolean;
}

export class KeyProvider {
  /** Keys by their string form, which is what identifies them here. */
  private wanted = new Map<string, CID>();
  private readonly provided = new Map<string, CID>();
  private running = false;
  /** A full round was asked for while one ran: it runs when that one ends. */
  private againQueued = false;
  private retryMs = PROVIDE_RETRY_MS;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private shutdown = new AbortController();

  constructor(private readonly init: KeyProviderInit) {}

  /** Sets the keys to provide and provides those not provided yet; all of them when `again`. */
  async update(keys: CID[], again = false): Promise<void> {
    const wanted = new Map(keys.map((cid) => [cid.toString(), cid]));
    for (const [key, cid] of this.provided) {
      if (wanted.has(key)) continue;
      this.provided.delete(key);
      this.init
        .dht()
        .cancelReprovide(cid)
        .catch(() => {});
    }
    this.wanted = wanted;
    await this.run(again);
  }

  /** A peer finished identify: if a provide is owed, try again shortly (its DHT entry lands after). */
  peerIdentified(): void {
    if (this.retry || this.pending().length === 0) return;
    this.schedule(PROVIDE_RETRY_MS);
  }

  stop(): void {
    this.shutdown.abort();
    this.shutdown = new AbortController();
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
  }

  private pending(): [string, CID][] {
    return [...this.wanted].filter(([key]) => !this.provided.has(key));
  }

  private async run(again: boolean): Promise<void> {
    const todo = again ? [...this.wanted] : this.pending();
    if (this.running) {
      this.againQueued ||= again;
      return;
    }
    if (todo.length === 0) return;
    this.running = true;
    const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(PROVIDE_TIMEOUT_MS)]);
    let missed = 0;
    try {
      for (const [key, cid] of todo) {
        let reached = 0;
        for await (const event of this.init.dht().provide(cid, { signal })) {
          if (event.name === "PEER_RESPONSE" && event.messageName === "ADD_PROVIDER") reached++;
        }
        if (reached > 0) this.provided.set(key, cid);
        else missed++;
        log.debug("provided a key", { key, peers: reached });
      }
    } catch (err) {
      missed++;
      if (!signal.aborted) log.debug("provide failed", { err: errorMessage(err) });
    } finally {
      this.running = false;
    }
    if (this.againQueued && !this.shutdown.signal.aborted) {
      this.againQueued = false;
      return this.run(true);
    }
    if (missed === 0) this.retryMs = PROVIDE_RETRY_MS;
    else if (!this.shutdown.signal.aborted && this.init.connected()) {
      this.schedule(this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, PROVIDE_RETRY_MAX_MS);
    }
  }

  private schedule(ms: number): void {
    if (this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.run(false);
    }, ms);
  }
}
