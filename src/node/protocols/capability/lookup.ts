import type { ContentRouting, PeerId } from "@libp2p/interface";
import type { ConnectionManager } from "@libp2p/interface-internal";
import type { SingleKadDHT } from "@libp2p/kad-dht";
import type { CID } from "multiformats/cid";
import { AbortedError, errorMessage } from "../../../util/errors.ts";
import { logger } from "../../../util/logger.ts";
import type { PeerDirectory } from "../../directory.ts";
import { fetchRecord } from "./protocol.ts";

/**
 * Record lookups: the DHT providers of a key (a model's, or the aggregator key), each one's record
 * fetched over CAPABILITY_PROTOCOL into the directory, a bounded number at a time.
 */

/** A lookup gives up (its caller returning what it has) after this long. */
export const FIND_PROVIDERS_TIMEOUT_MS = 10_000;
/** A record fetched or gossiped this recently is not fetched again by a lookup. */
export const RECORD_FRESH_MS = 5_000;
/** Records fetched in parallel during one lookup. */
export const MAX_PARALLEL_FETCHES = 8;
/** While the DHT routing table is empty, lookups check again this often. */
export const ROUTING_POLL_MS = 50;

const log = logger("node:capability");

export interface FindProvidersOptions {
  signal?: AbortSignal;
  /** Default FIND_PROVIDERS_TIMEOUT_MS; when it passes, the peers found so far are returned. */
  timeoutMs?: number;
  /** Stop the DHT walk once this many peers are found. */
  limit?: number;
}

export interface LookupInit {
  dht: () => SingleKadDHT;
  contentRouting: ContentRouting;
  connectionManager: Pick<ConnectionManager, "openStream">;
  directory: PeerDirectory;
  /** This node: never looked up. */
  self: PeerId;
  /** Aborts when the service stops. */
  shutdown: () => AbortSignal;
}

/**
 * Walks the DHT for the providers of `cid` and fetches each one's record into the directory, where
 * gossip also puts records; the caller then picks from the directory. Returns when the walk and the
 * fetches end or the timeout passes; throws AbortedError when `options.signal` aborts. `what` names
 * the lookup in logs and errors.
 */
export async function findRecords(
  init: LookupInit,
  cid: CID,
  what: string,
  options: FindProvidersOptions,
): Promise<void> {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? FIND_PROVIDERS_TIMEOUT_MS);
  const signal = AbortSignal.any([timeout, init.shutdown(), ...(options.signal ? [options.signal] : [])]);
  const seen = new Set<string>();
  const queue = new TaskQueue(MAX_PARALLEL_FETCHES);
  try {
    await waitForRoutingPeers(init.dht(), signal);
    for await (const peer of init.contentRouting.findProviders(cid, { signal })) {
      const id = peer.id.toString();
      if (peer.id.equals(init.self) || seen.has(id)) continue;
      seen.add(id);
      queue.add(() => refresh(init, peer.id, signal));
      if (options.limit !== undefined && seen.size >= options.limit) break;
    }
  } catch (err) {
    if (!signal.aborted) log.debug(`${what} lookup failed`, { key: cid.toString(), err: errorMessage(err) });
  }
  await queue.idle();
  if (options.signal?.aborted) throw new AbortedError(`${what} lookup cancelled`, { cause: options.signal.reason });
}

/** Fetches a peer's record unless a fresh one is already held. */
async function refresh(init: LookupInit, peerId: PeerId, signal: AbortSignal): Promise<void> {
  const id = peerId.toString();
  const at = init.directory.receivedAt(id);
  if (at !== undefined && Date.now() - at < RECORD_FRESH_MS && init.directory.get(id)) return;
  try {
    const record = await fetchRecord(init.connectionManager, peerId, signal);
    init.directory.upsert(record);
  } catch (err) {
    log.debug("could not fetch a capability record", { peer: id, err: errorMessage(err) });
  }
}

/** Runs at most `limit` tasks at once; `idle()` waits until all have settled. */
export class TaskQueue {
  private running = 0;
  private readonly waiting: (() => Promise<void>)[] = [];
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly limit: number) {}

  add(task: () => Promise<void>): void {
    this.waiting.push(task);
    this.next();
  }

  async idle(): Promise<void> {
    while (this.inFlight.size || this.waiting.length) await Promise.allSettled([...this.inFlight]);
  }

  private next(): void {
    while (this.running < this.limit) {
      const task = this.waiting.shift();
      if (!task) return;
      this.running++;
      const p: Promise<void> = task()
        .catch(() => {})
        .finally(() => {
          this.running--;
          this.inFlight.delete(p);
          this.next();
        });
      this.inFlight.add(p);
    }
  }
}

/**
 * A node that has just dialled its bootstrap has an empty routing table until identify completes;
 * a lookup started then would find nothing. Waits until a DHT peer is known or `signal` aborts.
 */
export async function waitForRoutingPeers(dht: SingleKadDHT, signal: AbortSignal): Promise<void> {
  while (dht.routingTable.size === 0 && !signal.aborted) {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const t = setTimeout(done, ROUTING_POLL_MS);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}
