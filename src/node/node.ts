import type { IdentifyResult, PeerId } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { type Multiaddr, multiaddr } from "@multiformats/multiaddr";
import type { Config } from "../config/index.ts";
import { loadOrCreateEncryptionKey } from "../crypto/key-file.ts";
import type { Shard } from "../jobs/records.ts";
import type { ResolvedModel } from "../models/local.ts";
import type { Msat } from "../payments/amount.ts";
import type { Chain } from "../payments/chain/index.ts";
import type { ChannelNetwork } from "../payments/channel/script.ts";
import { ChannelStore } from "../payments/channel/store.ts";
import { DirectPayments } from "../payments/direct.ts";
import { SqliteEscrowStore } from "../payments/lightning/escrow-store.ts";
import { LightningRail } from "../payments/lightning/lightning-rail.ts";
import type { LndRest } from "../payments/lightning/lnd-rest.ts";
import { modelPrice, type PriceFlags } from "../payments/pricing.ts";
import type { Wallet } from "../payments/wallet/index.ts";
import type { Engine, InferenceEvent, InferenceRequest, RuntimeName } from "../runtime/engine.ts";
import type { Store } from "../store/db.ts";
import { ConfigError, errorMessage, UsageError } from "../util/errors.ts";
import { logger } from "../util/logger.ts";
import { VERSION } from "../version.ts";
import { Aggregator } from "./aggregator/aggregator.ts";
import { runLocalShard } from "./aggregator/local-shard.ts";
import { nodeNetwork } from "./aggregator/network.ts";
import { RateMeter } from "./control/dash-rate.ts";
import { createHost, type Host } from "./host.ts";
import { loadOrCreateIdentity } from "./identity.ts";
import {
  bookPayment,
  ChainTip,
  closeExpiring,
  fundingConfirmed,
  NodeChannels,
  nodeBooks,
  publish,
  WalletChannelKeys,
} from "./payments.ts";
import { Payouts } from "./payouts.ts";
import { type CapabilityDescription, type CapabilityService, capabilityService } from "./protocols/capability/index.ts";
import type { CapabilityRecord } from "./protocols/capability/messages.ts";
import { type ChannelService, channelProtocol } from "./protocols/channel/index.ts";
import { type InferLoad, type InferService, inferProtocol } from "./protocols/infer/index.ts";
import { type JobService, jobProtocol } from "./protocols/job/index.ts";
import { type RunShardOptions, type ShardEvent, type ShardService, shardProtocol } from "./protocols/shard/index.ts";
import { Serving } from "./serving.ts";

export { BENCH_MODEL } from "./serving.ts";

/**
 * An Infernet node: the libp2p host plus Infernet's protocols, the engines it serves with, and what
 * it knows about other peers. `infernet start` runs one for as long as it lives (what it serves can
 * change meanwhile: `serveModel`, `unserveModel`); one-off commands start an ephemeral one (random
 * ports, DHT client mode, serves nothing).
 */
const log = logger("node");

/** Listen addresses of an ephemeral node: any free port, QUIC and TCP. */
export const EPHEMERAL_LISTEN = ["/ip4/0.0.0.0/udp/0/quic-v1", "/ip4/0.0.0.0/tcp/0"];
/** Longest wait for a bootstrap peer dialled directly. */
export const BOOTSTRAP_DIAL_TIMEOUT_MS = 5_000;
/**
 * How often a long-running node checks that it is still connected to its bootstrap peers, and dials
 * those it lost (an aggregator restarted, a network blip): libp2p's reconnect queue gives up after a
 * few tries, and a peer that comes back later would stay unconnected.
 */
export const BOOTSTRAP_CHECK_MS = 5_000;
/** A measured round-trip time is reused for this long before measuring again. */
export const LATENCY_TTL_MS = 30_000;
/** Longest wait for one ping. */
export const PING_TIMEOUT_MS = 3_000;
/**
 * A peer that did not answer a ping is not pinged again for this long (a provider that vanished must
 * not cost every request a ping timeout while its record lives on in the directory).
 */
export const UNREACHABLE_RETRY_MS = 10_000;

export interface StartNodeOptions {
  config: Config;
  store: Store;
  /** Models to serve (provider mode); empty or absent = client/relay node (until `serveModel`). */
  serve?: ResolvedModel[];
  /** Satoshis per 1,000 tokens or inferences, for every model (default: config.price). */
  price?: number;
  /** Prices of models by name (`infernet start --price MODEL=...`), over `price`. */
  prices?: PriceFlags;
  /** A short-lived node for one command. */
  ephemeral?: boolean;
  /** Engines to serve with (default: configured from `config`). */
  engines?: Record<RuntimeName, Engine>;
  /** Direct requests must be paid as they stream, over a channel from the client (payments/direct.ts). */
  requirePayment?: boolean;
  /** This node's Lightning public key, announced so aggregators pay its earnings by keysend. */
  lightningNodeKey?: string;
  /** Run an aggregator on this node (it may serve models too), taking this fee; `escrow`: take payment. */
  aggregator?: { feePercent: number; escrow?: boolean; minBondMsat?: Msat };
  /** The node's Bitcoin side: its wallet key (channel keys), the chain, the network channels are on. */
  payments?: {
    /** The on-chain wallet, made on first use (its key file and BIP32 code cost a node start nothing). */
    wallet?: () => Wallet;
    chain?: Chain;
    network?: ChannelNetwork;
    feeRate?: (signal?: AbortSignal) => Promise<bigint>;
    /** This node's LND (INFERNET_LND_URL): an aggregator with escrow takes jobs paid with hold invoices. */
    lnd?: LndRest;
  };
  signal?: AbortSignal;
}

export interface NodeStatus {
  peerId: string;
  version: string;
  /** What it does for the network: serves models, runs jobs for clients (and perhaps serves too), or neither. */
  mode: "provider" | "aggregator" | "client";
  /** Set when the node is an aggregator: its fee and the copies it has in flight per provider. */
  aggregator?: { feePercent: number; inFlight: Record<string, number> };
  addresses: string[];
  startedAt: number;
  uptimeMs: number;
  connections: number;
  peersKnown: number;
  load: InferLoad;
  models: { name: string; sha256: string; runtime: RuntimeName }[];
  price: number;
}

export interface PeerRow {
  peerId: string;
  addrs: string[];
  connected: boolean;
  latencyMs: number | undefined;
  record: CapabilityRecord | undefined;
}

type InfernetHost = Host & {
  services: {
    infer: InferService;
    shard: ShardService;
    job: JobService;
    capability: CapabilityService;
    channel: ChannelService;
  };
};

export class InfernetNode implements AsyncDisposable {
  /** Set when the node runs an aggregator (`start --aggregator`). */
  aggregator: Aggregator | undefined;
  /** Its payment channels (`infernet wallet fund|pay|close`). */
  channels!: NodeChannels;
  /** An aggregator that takes payment pays its providers' earnings out with this. */
  payouts: Payouts | undefined;
  /** False while serving is paused (dashboard `p`): new infer and shard requests are refused, running ones finish. */
  accepting = true;
  /** Measured round-trip times; `ms` undefined for a peer that did not answer. */
  private readonly latency = new Map<string, { ms: number | undefined; at: number }>();
  private readonly pinging = new Map<string, Promise<number | undefined>>();

  private constructor(
    readonly config: Config,
    readonly host: InfernetHost,
    private readonly servedSet: Serving,
    readonly price: number,
    readonly startedAt: number,
    private readonly bootstrapAddrs: string[],
    readonly store: Store,
    readonly produced: RateMeter,
    /** One-off nodes never serve (they live for one command). */
    private readonly ephemeral: boolean,
  ) {}

  static async start(options: StartNodeOptions): Promise<InfernetNode> {
    const { config, store } = options;
    const price = options.price ?? config.price;
    const serve = options.serve ?? [];
    // A long-running node may be asked to serve later: its protocols and record are ready for it.
    const mayServe = !options.ephemeral || serve.length > 0;
    const aggregator = options.aggregator;

    let host: InfernetHost | undefined;
    let node: InfernetNode | undefined;
    // Load changes and served-set changes are announced as they happen (the service merges bursts).
    const produced = new RateMeter();
    const serving = new Serving({
      config,
      store,
      produced,
      onChange: () => void host?.services.capability.announce(),
      ...(options.engines ? { engines: options.engines } : {}),
    });
    if (serve.length) await serving.add(serve, options.signal);
    else if (aggregator) await serving.detect(options.signal);

    // A serving node's key for end-to-end encrypted payloads, announced in its record (crypto/envelope.ts).
    const encryption = mayServe && !options.ephemeral ? loadOrCreateEncryptionKey(config.home) : undefined;
    // Paused: requests are refused with "busy", and the record offers no slots (`rankProviders` skips it).
    const open = () => node?.accepting !== false;
    const describe = (): CapabilityDescription | undefined => {
      const hardware = serving.hardware;
      if (!hardware || (serving.list.length === 0 && !aggregator)) return undefined;
      if (!host) throw new Error("node not started");
      const load = host.services.infer.load();
      return {
        addrs: host.getMultiaddrs().map(String),
        software: VERSION,
        hardware: {
          gpus: hardware.nvidia.gpus.map((g) => ({
            name: g.name,
            vramTotal: g.memoryTotalBytes ?? 0,
            vramFree: g.memoryFreeBytes ?? 0,
            ...(g.cudaCores ? { cudaCores: g.cudaCores } : {}),
            ...(g.computeCapability ? { computeCapability: g.computeCapability } : {}),
          })),
          cpu: { model: hardware.cpu.model, cores: hardware.cpu.logicalCores },
          ramTotal: hardware.memory.totalBytes,
          ...serving.bench,
        },
        models: serving.list.flatMap((m) =>
          m.sha256
            ? [
                {
                  name: m.name,
                  sha256: m.sha256,
                  runtime: m.runtime,
                  price: modelPrice(options.prices, m.name, m.runtime, price),
                },
              ]
            : [],
        ),
        load: open()
          ? { active: load.active, queued: load.queued, maxConcurrent: load.maxConcurrent }
          : { active: 0, queued: 0, maxConcurrent: 0 },
        reputation: { completed: load.served, failed: load.failed },
        ...(aggregator ? { aggregator: { feePercent: aggregator.feePercent } } : {}),
        ...(options.requirePayment ? { requiresPayment: true as const } : {}),
        ...(options.lightningNodeKey ? { lightning: { nodeKey: options.lightningNodeKey } } : {}),
        ...(encryption ? { encryption: { x25519: Buffer.from(encryption.publicKey).toString("hex") } } : {}),
      };
    };

    const served = serving.served;
    const engines = mayServe ? { engines: serving.live } : {};
    const privateKey = await loadOrCreateIdentity(config.home);
    const { wallet, chain, network } = options.payments ?? {};

    const channelStore = new ChannelStore(store);
    const tip = new ChainTip(chain, () => channelStore.hasLive());
    const books = nodeBooks(store);
    // What clients paid for their direct requests, as each payment is stored (payments/direct.ts).
    const direct = new DirectPayments();
    host = (await createHost({
      privateKey,
      listen: options.ephemeral ? EPHEMERAL_LISTEN : config.listen,
      announce: config.announce,
      bootstrap: config.bootstrap,
      mdns: config.mdns,
      dhtClient: options.ephemeral ?? false,
      services: {
        infer: inferProtocol({
          served,
          accepting: open,
          ...engines,
          ...(options.requirePayment
            ? { charge: { payments: direct, price: (m) => modelPrice(options.prices, m.name, m.runtime, price) } }
            : {}),
        }),
        // Aggregators send providers whole shards of batch jobs over this one.
        shard: shardProtocol({ served, accepting: open, ...engines }),
        // Clients submit batch jobs to an aggregator over this one.
        job: jobProtocol(aggregator ? { aggregator: () => node?.aggregator } : {}),
        capability: capabilityService(mayServe || aggregator ? { describe } : {}),
        // Payment channels: this node pays (a client, an aggregator's payouts) and is paid over them.
        channel: channelProtocol({
          store,
          ...(wallet ? { keys: new WalletChannelKeys(() => wallet().key, store) } : {}),
          ...(network ? { network } : {}),
          height: () => tip.known(),
          payee: !options.ephemeral,
          onPayment: (payment) => bookPayment(books.escrow, payment),
          onStored: (payments) => {
            for (const p of payments) direct.credit(p.peer, p.memo, p.amountMsat);
          },
          // Payments count once the funding is buried under config.channelConfirmations blocks (a
          // payer could otherwise double-spend an unconfirmed funding and keep what it paid).
          fundingConfirmed: (params) => fundingConfirmed(chain, params, config.channelConfirmations),
          // A channel counts only once its funding is on the chain (this node broadcasts it; known is fine).
          checkFunding: async (tx) => {
            if (!chain) throw new ConfigError("this node has no chain to check a channel's funding on");
            await publish(chain, tx);
          },
        }),
      },
    })) as InfernetHost;
    if (chain) tip.onHeight = (height) => closeExpiring(host?.services.channel as ChannelService, chain, height);
    tip.start();
    host.addEventListener("stop", () => tip.stop());
    node = new InfernetNode(
      config,
      host,
      serving,
      price,
      Date.now(),
      config.bootstrap,
      store,
      produced,
      options.ephemeral ?? false,
    );
    node.channels = new NodeChannels({
      channel: host.services.channel,
      wallet,
      chain,
      tip,
      ...(options.payments?.feeRate !== undefined ? { feeRate: options.payments.feeRate } : {}),
    });
    // An escrowing aggregator's Lightning: jobs paid with hold invoices, earnings paid out by keysend.
    const lnd = aggregator?.escrow ? options.payments?.lnd : undefined;
    const lightning = lnd ? new LightningRail({ lnd, store: new SqliteEscrowStore(store.db) }) : undefined;
    if (aggregator) {
      node.aggregator = new Aggregator({
        network: nodeNetwork(node),
        store,
        home: config.home,
        feePercent: aggregator.feePercent,
        privateKey,
        ...(aggregator.escrow ? { escrow: true } : {}),
        ...(aggregator.minBondMsat !== undefined ? { minBondMsat: aggregator.minBondMsat } : {}),
        ...(lightning ? { lightning } : {}),
      });
      node.aggregator.start();
      if (node.aggregator.payments) {
        const directory = host.services.capability.directory;
        node.payouts = new Payouts({
          ...(lightning ? { lightning, nodeKey: (peer) => directory.get(peer)?.lightning?.nodeKey } : {}),
          payments: node.aggregator.payments,
          channels: node.channels,
          channel: host.services.channel,
        });
        node.payouts.start();
      }
    }
    // Dial the bootstrap peers now rather than after the bootstrap module's delay (see host.ts).
    await node.dialBootstrap(options.signal);
    if (!options.ephemeral) node.keepBootstrap();
    log.info("node started", { peerId: node.peerId, addresses: node.addresses(), serving: serve.map((m) => m.name) });
    return node;
  }

  /** The models served now. */
  get serving(): readonly ResolvedModel[] {
    return this.servedSet.list;
  }

  /** The engines, once the node has served a model. */
  get engines(): Record<RuntimeName, Engine> | undefined {
    return this.servedSet.engines;
  }

  /**
   * Serves one more model (already downloaded and verified): the engines are made and the machine
   * measured if this is the first, the model loaded, then announced. Serving a model of a name already
   * served does nothing. An abort or a failure leaves the served set as it was.
   */
  async serveModel(model: ResolvedModel, signal?: AbortSignal): Promise<void> {
    if (this.ephemeral) throw new UsageError("a node started for one command serves nothing");
    await this.servedSet.add([model], signal);
  }

  /**
   * Stops serving a model (by name): new requests for it are refused with "model-not-served", those
   * running finish. With nothing left served the node stops announcing a record (an aggregator keeps
   * its own). A UsageError when no model of that name is served.
   */
  unserveModel(name: string): void {
    this.servedSet.remove(name);
  }

  /** Dials the configured bootstrap peers now (the bootstrap module waits a second first). */
  /** Connects to a peer at `addr` (a multiaddr ending in /p2p/<id>). */
  async dial(addr: Multiaddr, signal?: AbortSignal): Promise<void> {
    await this.host.dial(addr, signal ? { signal } : {});
  }

  async dialBootstrap(signal?: AbortSignal): Promise<void> {
    const timeout = AbortSignal.timeout(BOOTSTRAP_DIAL_TIMEOUT_MS);
    const dialSignal = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const results = await Promise.allSettled(
      this.bootstrapAddrs.map((a) => this.host.dial(multiaddr(a), { signal: dialSignal })),
    );
    for (const [i, r] of results.entries()) {
      if (r.status === "rejected")
        log.warn("bootstrap peer unreachable", { addr: this.bootstrapAddrs[i], err: errorMessage(r.reason) });
    }
  }

  private bootstrapTimer: ReturnType<typeof setInterval> | undefined;
  private redialing = false;
  private stopWatchingBootstrap: (() => void) | undefined;

  /**
   * Keeps the bootstrap peers (those named by /p2p/ id): every BOOTSTRAP_CHECK_MS it dials those it
   * has no connection to. Whoever redials a lost one (this timer, or libp2p's own reconnect queue for
   * the keep-alive peers the bootstrap module tags), once identify has run on the new connection the
   * node provides its DHT keys and announces its record again: a restarted bootstrap peer (an
   * aggregator) starts with empty DHT and directory, and would not learn of this node otherwise.
   */
  private keepBootstrap(): void {
    const peers = this.bootstrapAddrs.flatMap((a) => {
      const id = /\/p2p\/([^/]+)$/.exec(a)?.[1];
      try {
        return id ? [{ addr: a, id: peerIdFromString(id) }] : [];
      } catch {
        return [];
      }
    });
    if (peers.length === 0) return;
    const lost = new Set<string>();
    const named = new Map(peers.map((p) => [p.id.toString(), p.addr]));
    const onDisconnect = (e: CustomEvent<PeerId>) => {
      if (named.has(e.detail.toString())) lost.add(e.detail.toString());
    };
    const onIdentify = (e: CustomEvent<IdentifyResult>) => {
      const id = e.detail.peerId.toString();
      if (!lost.delete(id)) return;
      log.info("bootstrap peer reconnected", { addr: named.get(id) });
      this.capability.bootstrapReconnected();
    };
    this.host.addEventListener("peer:disconnect", onDisconnect);
    this.host.addEventListener("peer:identify", onIdentify);
    this.stopWatchingBootstrap = () => {
      this.host.removeEventListener("peer:disconnect", onDisconnect);
      this.host.removeEventListener("peer:identify", onIdentify);
    };
    this.bootstrapTimer = setInterval(() => {
      if (this.redialing) return;
      const unconnected = peers.filter((p) => this.host.getConnections(p.id).length === 0);
      if (unconnected.length === 0) return;
      this.redialing = true;
      const signal = AbortSignal.timeout(BOOTSTRAP_DIAL_TIMEOUT_MS);
      void Promise.allSettled(unconnected.map((p) => this.host.dial(multiaddr(p.addr), { signal })))
        .then((results) => {
          for (const [i, r] of results.entries()) {
            if (r.status === "rejected")
              log.debug("bootstrap peer still unreachable", {
                addr: unconnected[i]?.addr,
                err: errorMessage(r.reason),
              });
          }
        })
        .finally(() => {
          this.redialing = false;
        });
    }, BOOTSTRAP_CHECK_MS);
    this.bootstrapTimer.unref?.();
  }

  get peerId(): string {
    return this.host.peerId.toString();
  }

  get infer(): InferService {
    return this.host.services.infer;
  }

  /** Client side of the job protocol: submit to, follow and fetch from aggregators. */
  get jobs(): JobService {
    return this.host.services.job;
  }

  get capability(): CapabilityService {
    return this.host.services.capability;
  }

  /** Whether this node serves the model with this file sha256. */
  serves(sha256: string): boolean {
    return this.serving.some((m) => m.sha256 === sha256);
  }

  /** Runs a request on a model this node serves, with its own engines (no network). */
  runServed(sha256: string, request: InferenceRequest, signal?: AbortSignal): AsyncIterable<InferenceEvent> {
    const model = this.serving.find((m) => m.sha256 === sha256);
    const engine = model && this.engines?.[model.runtime];
    if (!model || !engine) throw new Error(`this node does not serve ${sha256}`);
    return engine.run(model, request, signal ? { signal } : {});
  }

  /** Runs a batch shard on a model this node serves, with its own engines (its aggregator's own copies). */
  runShardHere(sha256: string, shard: Shard, options: RunShardOptions = {}): AsyncIterable<ShardEvent> {
    const model = this.serving.find((m) => m.sha256 === sha256);
    if (!model || !this.engines) throw new Error(`this node does not serve ${sha256}`);
    return runLocalShard(this.peerId, model, this.engines, shard, options);
  }

  addresses(): string[] {
    return this.host.getMultiaddrs().map(String);
  }

  status(): NodeStatus {
    return {
      peerId: this.peerId,
      version: VERSION,
      mode: this.serving.length ? "provider" : this.aggregator ? "aggregator" : "client",
      addresses: this.addresses(),
      startedAt: this.startedAt,
      uptimeMs: Date.now() - this.startedAt,
      connections: this.host.getConnections().length,
      peersKnown: this.capability.directory.all().length,
      load: this.infer.load(),
      models: this.serving.map((m) => ({ name: m.name, sha256: m.sha256 ?? "", runtime: m.runtime })),
      price: this.price,
      ...(this.aggregator
        ? {
            aggregator: {
              feePercent: this.aggregator.feePercent,
              inFlight: Object.fromEntries(this.aggregator.inFlight()),
            },
          }
        : {}),
    };
  }

  /**
   * Round-trip time to a peer: the connection monitor's measurement when there is one, else one ping
   * (one at a time per peer: libp2p allows a single ping stream per connection); undefined when unreachable.
   */
  async latencyTo(peerId: string, signal?: AbortSignal): Promise<number | undefined> {
    const monitored = this.host.getConnections().find((c) => c.remotePeer.toString() === peerId && c.rtt !== undefined);
    if (monitored?.rtt !== undefined) return monitored.rtt;
    const known = this.latency.get(peerId);
    if (known && Date.now() - known.at < (known.ms === undefined ? UNREACHABLE_RETRY_MS : LATENCY_TTL_MS)) {
      return known.ms;
    }
    let pending = this.pinging.get(peerId);
    if (!pending) {
      pending = this.ping(peerId, signal).finally(() => this.pinging.delete(peerId));
      this.pinging.set(peerId, pending);
    }
    return pending;
  }

  private async ping(peerId: string, signal?: AbortSignal): Promise<number | undefined> {
    try {
      const timeout = AbortSignal.timeout(PING_TIMEOUT_MS);
      const ms = await this.host.services.ping.ping(peerIdFromString(peerId) as PeerId, {
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      this.latency.set(peerId, { ms, at: Date.now() });
      return ms;
    } catch (err) {
      log.debug("ping failed", { peerId, err: errorMessage(err) });
      // Not for a ping the caller cancelled: that says nothing about the peer.
      if (!signal?.aborted) this.latency.set(peerId, { ms: undefined, at: Date.now() });
      return undefined;
    }
  }

  /** Latency already known (no network), for ranking. */
  knownLatency(peerId: string): number | undefined {
    const monitored = this.host.getConnections().find((c) => c.remotePeer.toString() === peerId && c.rtt !== undefined);
    return monitored?.rtt ?? this.latency.get(peerId)?.ms;
  }

  /** Known peers: connected ones and those with a valid capability record, with measured latency. */
  async peers(signal?: AbortSignal): Promise<PeerRow[]> {
    const records = new Map(this.capability.directory.all().map((r) => [r.peerId, r]));
    const connected = new Set(this.host.getConnections().map((c) => c.remotePeer.toString()));
    const ids = [...new Set([...records.keys(), ...connected])].filter((id) => id !== this.peerId).sort();
    return Promise.all(
      ids.map(async (id) => ({
        peerId: id,
        addrs: records.get(id)?.addrs ?? [],
        connected: connected.has(id),
        latencyMs: await this.latencyTo(id, signal),
        record: records.get(id),
      })),
    );
  }

  async stop(): Promise<void> {
    clearInterval(this.bootstrapTimer);
    this.stopWatchingBootstrap?.();
    await this.payouts?.stop();
    await this.aggregator?.stop();
    await this.host.stop();
    await this.servedSet.dispose();
    log.info("node stopped", { peerId: this.peerId });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
