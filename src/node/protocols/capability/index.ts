import { type GossipSub, type Message, TopicValidatorResult } from "@libp2p/gossipsub";
import {
  type ContentRouting,
  type Libp2pEvents,
  type PeerId,
  type PrivateKey,
  type Startable,
  serviceCapabilities,
  serviceDependencies,
  type TypedEventTarget,
} from "@libp2p/interface";
import type { AddressManager, ConnectionManager, Registrar } from "@libp2p/interface-internal";
import type { SingleKadDHT } from "@libp2p/kad-dht";
import { AbortedError, ConfigError, errorMessage } from "../../../util/errors.ts";
import { logger } from "../../../util/logger.ts";
import { PeerDirectory } from "../../directory.ts";
import { type FindProvidersOptions, findRecords, type LookupInit } from "./lookup.ts";
import { aggregatorCid, type CapabilityRecord, ExpiredRecordError, modelCid, verifyRecord } from "./messages.ts";
import { type CapabilityDescription, OwnRecord } from "./own-record.ts";
import { CAPABILITY_PROTOCOL, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, serveRecord } from "./protocol.ts";
import { KeyProvider } from "./provide.ts";

export {
  FIND_PROVIDERS_TIMEOUT_MS,
  type FindProvidersOptions,
  MAX_PARALLEL_FETCHES,
  RECORD_FRESH_MS,
} from "./lookup.ts";
export type { CapabilityDescription } from "./own-record.ts";
export { CAPABILITY_PROTOCOL } from "./protocol.ts";

/**
 * The capability service: providers and aggregators announce signed records (gossip on
 * CAPABILITY_TOPIC, DHT provider records keyed by model hash and, for aggregators, by `aggregatorCid`,
 * CAPABILITY_PROTOCOL on request); every node verifies what it hears and keeps the newest record per
 * peer in its directory; clients find the providers of a model and the aggregators.
 */

export const CAPABILITY_TOPIC = "/infernet/capabilities/1";
/** A provider re-publishes its record this often (and on `announce()`). */
export const DEFAULT_ANNOUNCE_INTERVAL_MS = 30_000;
/** Records are valid this long: several announce intervals, so a lost message or two costs nothing. */
export const DEFAULT_RECORD_TTL_MS = 4 * DEFAULT_ANNOUNCE_INTERVAL_MS;
/** DHT provider records are put again this often, so peers that joined since hold them too. */
export const DEFAULT_REPROVIDE_INTERVAL_MS = 10 * 60_000;
/** Two announcements are at least this far apart; `announce()` calls in between are coalesced. */
export const MIN_ANNOUNCE_GAP_MS = 500;
/** After a bootstrap peer reconnects, the wait before this node provides and announces to it again. */
export const RECONNECT_SETTLE_MS = 250;
/** Gossip from one peer closer together than this is not relayed (a flood of fresh seqs). */
export const MIN_GOSSIP_GAP_MS = 250;
/** First retry of an announcement whose record could not be built yet (the host still starting). */
export const FIRST_ANNOUNCE_RETRY_MS = 100;
/** Expired records are dropped this often. */
export const PRUNE_INTERVAL_MS = 10_000;

const log = logger("node:capability");

export interface CapabilityInit {
  /**
   * Builds this node's current record (the service fills peerId, seq, issuedAt, expiresAt). Absent =
   * never a provider nor an aggregator. Returning undefined = nothing to announce now (a node that
   * serves nothing yet, or no longer): nothing is published and CAPABILITY_PROTOCOL answers no record.
   */
  describe?: () => CapabilityDescription | undefined;
  announceIntervalMs?: number;
  ttlMs?: number;
  reprovideIntervalMs?: number;
}

/**
 * What the service takes from libp2p: core components plus the `dht` and `pubsub` services, which
 * libp2p hands every service by the names they have in `services` (host.ts). Optional in the type
 * only because libp2p's service map is open; the service declares them as dependencies.
 */
export interface CapabilityComponents {
  peerId: PeerId;
  privateKey: PrivateKey;
  registrar: Registrar;
  connectionManager: ConnectionManager;
  addressManager: AddressManager;
  contentRouting: ContentRouting;
  events: TypedEventTarget<Libp2pEvents>;
  dht?: SingleKadDHT;
  pubsub?: GossipSub;
}

export interface CapabilityService extends Startable {
  directory: PeerDirectory;
  /**
   * Providers of a model (by file sha256) with valid, unexpired records, this node excluded: a DHT
   * provider lookup, each found peer's record fetched over CAPABILITY_PROTOCOL, plus what gossip
   * delivered. Throws AbortedError when `signal` aborts.
   */
  findProviders(sha256: string, options?: FindProvidersOptions): Promise<CapabilityRecord[]>;
  /**
   * The providers this node knows at once when one of their records arrived within `maxAgeMs`, with a
   * lookup refreshing them in the background; otherwise `findProviders`.
   */
  knownProviders(sha256: string, options: FindProvidersOptions & { maxAgeMs: number }): Promise<CapabilityRecord[]>;
  /**
   * Aggregators with valid, unexpired records, this node excluded, cheapest fee first, then by peer
   * id: the same lookup as `findProviders`, under `aggregatorCid()`. Throws AbortedError when
   * `signal` aborts.
   */
  findAggregators(options?: FindProvidersOptions): Promise<CapabilityRecord[]>;
  /**
   * A bootstrap peer came back (restarted, its DHT empty): provide every key again and announce, so
   * it can answer "who serves this model" at once rather than after the next reprovide. Never throws.
   */
  bootstrapReconnected(): void;
  /** Re-announce now (after load or models changed); calls closer than MIN_ANNOUNCE_GAP_MS are coalesced. Never throws. */
  announce(): Promise<void>;
  /** This node's current record, while it is a provider or an aggregator. */
  current(): CapabilityRecord | undefined;
  /** Gossiped records by verdict since start: accepted (stored, relayed), ignored (stale), rejected (invalid). */
  readonly gossip: Record<TopicValidatorResult, number>;
}

class DefaultCapabilityService implements CapabilityService {
  readonly directory = new PeerDirectory();
  readonly gossip = { accept: 0, ignore: 0, reject: 0 };
  readonly [Symbol.toStringTag] = "@infernet/capability";
  readonly [serviceCapabilities] = ["@infernet/capability"];
  readonly [serviceDependencies] = ["@libp2p/pubsub", "@libp2p/kad-dht"];

  private readonly announceIntervalMs: number;
  private readonly reprovideIntervalMs: number;
  private started = false;
  private shutdown = new AbortController();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  /** Models (sha256) with a background provider lookup in flight (one at a time each). */
  private readonly refreshing = new Set<string>();
  private readonly own: OwnRecord | undefined;
  private lastAnnounceAt = 0;
  private pendingAnnounce: Promise<void> | undefined;
  private readonly provider: KeyProvider;
  private readonly lastGossip = new Map<string, number>();
  private readonly lookupInit: LookupInit;

  constructor(
    private readonly components: CapabilityComponents,
    init: CapabilityInit,
  ) {
    this.announceIntervalMs = init.announceIntervalMs ?? DEFAULT_ANNOUNCE_INTERVAL_MS;
    this.reprovideIntervalMs = init.reprovideIntervalMs ?? DEFAULT_REPROVIDE_INTERVAL_MS;
    this.own = init.describe
      ? new OwnRecord({
          describe: init.describe,
          peerId: components.peerId,
          privateKey: components.privateKey,
          addresses: () => components.addressManager.getAddresses().map(String),
          ttlMs: init.ttlMs ?? DEFAULT_RECORD_TTL_MS,
        })
      : undefined;
    this.provider = new KeyProvider({
      dht: () => this.dht,
      connected: () => components.connectionManager.getConnections().length > 0,
    });
    this.lookupInit = {
      dht: () => this.dht,
      contentRouting: components.contentRouting,
      connectionManager: components.connectionManager,
      directory: this.directory,
      self: components.peerId,
      shutdown: () => this.shutdown.signal,
    };
  }

  private get dht(): SingleKadDHT {
    return required(this.components.dht, "dht");
  }

  private get pubsub(): GossipSub {
    return required(this.components.pubsub, "pubsub");
  }

  isStarted(): boolean {
    return this.started;
  }

  async start(): Promise<void> {
    this.shutdown = new AbortController();
    await this.components.registrar.handle(
      CAPABILITY_PROTOCOL,
      (stream) => serveRecord(stream, () => this.currentBytes()),
      { maxInboundStreams: MAX_INBOUND_STREAMS, maxOutboundStreams: MAX_OUTBOUND_STREAMS },
    );
    this.started = true;
  }

  /** Gossipsub accepts subscriptions only once it has started, which happens alongside us. */
  async afterStart(): Promise<void> {
    const pubsub = this.pubsub;
    pubsub.topicValidators.set(CAPABILITY_TOPIC, this.validate);
    pubsub.subscribe(CAPABILITY_TOPIC);
    this.every(PRUNE_INTERVAL_MS, () => this.prune());
    if (!this.own) return;
    this.components.events.addEventListener("peer:identify", this.onIdentify);
    this.every(this.announceIntervalMs, () => void this.announce());
    this.every(this.reprovideIntervalMs, () => void this.provide(true));
    // The host may not be fully constructed yet when `describe` is first needed: retry briefly.
    this.later(0, () => void this.firstAnnounce(FIRST_ANNOUNCE_RETRY_MS));
  }

  async beforeStop(): Promise<void> {
    this.components.events.removeEventListener("peer:identify", this.onIdentify);
    try {
      this.pubsub.unsubscribe(CAPABILITY_TOPIC);
    } catch (err) {
      log.debug("unsubscribe failed", { err: errorMessage(err) });
    }
    this.pubsub.topicValidators.delete(CAPABILITY_TOPIC);
  }

  async stop(): Promise<void> {
    this.started = false;
    this.shutdown.abort(new AbortedError("capability service stopped"));
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.provider.stop();
    await this.components.registrar.unhandle(CAPABILITY_PROTOCOL);
  }

  current(): CapabilityRecord | undefined {
    return this.own?.current?.record;
  }

  bootstrapReconnected(): void {
    if (!this.started) return;
    // Identify has just run: the DHT's routing table and gossipsub's subscriptions take the peer in
    // their own listeners of the same event, so the provide and announce wait a moment for them.
    this.later(RECONNECT_SETTLE_MS, () => {
      void this.provide(true);
      void this.announce();
    });
  }

  announce(): Promise<void> {
    if (!this.own || !this.started) return Promise.resolve();
    this.pendingAnnounce ??= this.announceSoon();
    return this.pendingAnnounce;
  }

  /** Publishes once the gap since the last announcement has passed; calls until then share it. */
  private async announceSoon(): Promise<void> {
    await Promise.resolve(); // `pendingAnnounce` is assigned before anything below runs
    const wait = this.lastAnnounceAt + MIN_ANNOUNCE_GAP_MS - Date.now();
    if (wait > 0) await new Promise((resolve) => this.later(wait, resolve));
    this.pendingAnnounce = undefined;
    if (this.started) await this.publish();
  }

  /**
   * Live providers re-announce every announce interval, so a recent record means the directory is
   * current. A request then does not wait for a walk of the DHT, which lasts as long as its slowest
   * peer: a dial timeout when one has vanished.
   */
  async knownProviders(
    sha256: string,
    options: FindProvidersOptions & { maxAgeMs: number },
  ): Promise<CapabilityRecord[]> {
    const self = this.components.peerId.toString();
    const now = Date.now();
    const known = this.directory.providersOf(sha256).filter((r) => r.peerId !== self);
    const fresh = known.some((r) => now - (this.directory.receivedAt(r.peerId) ?? 0) < options.maxAgeMs);
    if (!fresh) return this.findProviders(sha256, options);
    if (!this.refreshing.has(sha256)) {
      this.refreshing.add(sha256);
      void findRecords(this.lookupInit, modelCid(sha256), "provider", {})
        .catch(() => {})
        .finally(() => this.refreshing.delete(sha256));
    }
    return known;
  }

  async findProviders(sha256: string, options: FindProvidersOptions = {}): Promise<CapabilityRecord[]> {
    await findRecords(this.lookupInit, modelCid(sha256), "provider", options);
    return this.directory.providersOf(sha256).filter((r) => r.peerId !== this.components.peerId.toString());
  }

  async findAggregators(options: FindProvidersOptions = {}): Promise<CapabilityRecord[]> {
    await findRecords(this.lookupInit, aggregatorCid(), "aggregator", options);
    return this.directory.aggregators().filter((r) => r.peerId !== this.components.peerId.toString());
  }

  /** Gossip validator: verified, newer records are stored and relayed; bad ones rejected; never throws. */
  private readonly validate = (_from: PeerId, message: Message): TopicValidatorResult => {
    const verdict = this.judge(message);
    this.gossip[verdict]++;
    return verdict;
  };

  /** Verified, newer records are stored and relayed; bad ones rejected; never throws. */
  private judge(message: Message): TopicValidatorResult {
    try {
      if (message.type !== "signed") return TopicValidatorResult.Reject;
      const author = message.from.toString();
      const record = verifyRecord(message.data);
      if (record.peerId !== author) {
        log.info("dropped a record published by another peer", { author, record: record.peerId });
        return TopicValidatorResult.Reject;
      }
      if (author === this.components.peerId.toString()) return TopicValidatorResult.Ignore;
      const now = Date.now();
      if (now - (this.lastGossip.get(author) ?? 0) < MIN_GOSSIP_GAP_MS) return TopicValidatorResult.Ignore;
      if (!this.directory.upsert(record, now)) return TopicValidatorResult.Ignore;
      this.lastGossip.set(author, now);
      return TopicValidatorResult.Accept;
    } catch (err) {
      if (err instanceof ExpiredRecordError) return TopicValidatorResult.Ignore;
      log.info("dropped an invalid capability record", { err: errorMessage(err) });
      return TopicValidatorResult.Reject;
    }
  }

  private readonly onIdentify = (): void => {
    this.provider.peerIdentified();
  };

  private async firstAnnounce(retryMs: number): Promise<void> {
    if (!this.started) return;
    if (await this.publish()) return;
    this.later(retryMs, () => void this.firstAnnounce(Math.min(retryMs * 2, this.announceIntervalMs)));
  }

  /**
   * Signs a fresh record and publishes it; returns false when the record could not be built (true,
   * publishing nothing, while the node has nothing to announce).
   */
  private async publish(): Promise<boolean> {
    if (!this.own) return false;
    this.lastAnnounceAt = Date.now();
    let signed: { bytes: Uint8Array } | undefined;
    try {
      signed = await this.own.refresh();
    } catch (err) {
      log.warn("cannot build this node's capability record", { err: errorMessage(err) });
      return false;
    }
    if (!signed) return true;
    const { bytes } = signed;
    try {
      await this.pubsub.publish(CAPABILITY_TOPIC, bytes);
    } catch (err) {
      log.debug("capability gossip not sent", { err: errorMessage(err) });
    }
    void this.provide(false);
    return true;
  }

  /** The signed record to answer CAPABILITY_PROTOCOL with: the current one, re-signed when stale. */
  private async currentBytes(): Promise<Uint8Array | undefined> {
    if (!this.own) return undefined;
    try {
      return (await this.own.fresh(MIN_ANNOUNCE_GAP_MS))?.bytes;
    } catch (err) {
      log.warn("cannot build this node's capability record", { err: errorMessage(err) });
      const last = this.own.current;
      return last && last.record.expiresAt > Date.now() ? last.bytes : undefined;
    }
  }

  /** DHT provider records for the served models and the aggregator key (all again when `again`, else only new ones). */
  private async provide(again: boolean): Promise<void> {
    const record = this.own?.current?.record;
    if (!record || !this.started) return;
    const keys = record.models.map((m) => modelCid(m.sha256));
    if (record.aggregator) keys.push(aggregatorCid());
    await this.provider.update(keys, again);
  }

  private prune(): void {
    this.directory.prune();
    const cutoff = Date.now() - MIN_GOSSIP_GAP_MS;
    for (const [peer, at] of this.lastGossip) if (at < cutoff) this.lastGossip.delete(peer);
  }

  private every(ms: number, fn: () => void): void {
    const tick = () => {
      if (!this.started) return;
      fn();
      this.later(ms, tick);
    };
    this.later(ms, tick);
  }

  private later(ms: number, fn: (value?: unknown) => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }
}

function required<T>(service: T | undefined, name: string): T {
  if (!service) throw new ConfigError(`the capability service needs the libp2p "${name}" service`);
  return service;
}

/** The libp2p service factory: `services: { capability: capabilityService({ describe }) }`. */
export function capabilityService(init: CapabilityInit = {}): (components: CapabilityComponents) => CapabilityService {
  return (components) => new DefaultCapabilityService(components, init);
}
