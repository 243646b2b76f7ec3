import { noise, pureJsCrypto } from "@chainsafe/libp2p-noise";
import { quic } from "@chainsafe/libp2p-quic";
import { yamux } from "@chainsafe/libp2p-yamux";
import { autoNAT } from "@libp2p/autonat";
import { bootstrap } from "@libp2p/bootstrap";
import { gossipsub } from "@libp2p/gossipsub";
import { identify } from "@libp2p/identify";
import type { PrivateKey, ServiceMap } from "@libp2p/interface";
import { kadDHT } from "@libp2p/kad-dht";
import { mdns } from "@libp2p/mdns";
import { ping } from "@libp2p/ping";
import { tcp } from "@libp2p/tcp";
import { multiaddr } from "@multiformats/multiaddr";
import { createLibp2p, type Libp2p, type ServiceFactoryMap } from "libp2p";
import { ConfigError, errorMessage } from "../util/errors.ts";
import { reachabilityService } from "./reachability.ts";

/**
 * The libp2p host every Infernet node runs: QUIC (its own TLS 1.3) and TCP (Noise + Yamux),
 * identify, ping, AutoNAT, a Kademlia DHT under Infernet's own protocol id, gossipsub, bootstrap and
 * mDNS discovery. Infernet's own protocols are added as libp2p services by the caller.
 */

/** Kademlia protocol id: a private DHT, so public IPFS nodes never fill our routing tables. */
export const KAD_PROTOCOL = "/infernet/kad/1.0.0";
/** Open connections at most. */
export const MAX_CONNECTIONS = 300;
/** Connection attempts in flight at most. */
export const MAX_PARALLEL_DIALS = 50;
/** A dial that has not connected by then fails. */
export const DIAL_TIMEOUT_MS = 10_000;
/**
 * Time a new stream may take to agree on a protocol. libp2p keeps an inbound stream's bookkeeping for
 * this long, so a short value bounds the memory that finished requests hold.
 */
export const PROTOCOL_NEGOTIATION_TIMEOUT_MS = 5_000;
/** Gossipsub heartbeat: how often meshes are repaired and gossip is sent. */
export const GOSSIP_HEARTBEAT_MS = 700;
/**
 * Delay before the bootstrap module dials its list after start (libp2p's default). Shorter delays race
 * with a node's own early dial of the same peer and, measured here, can leave the DHT routing table
 * empty; a short-lived node that cannot wait dials its bootstrap peers itself (see node.ts).
 */
export const BOOTSTRAP_DELAY_MS = 1_000;
/** mDNS query interval on a LAN. */
export const MDNS_INTERVAL_MS = 10_000;

export interface HostInit {
  privateKey: PrivateKey;
  /** Multiaddrs to listen on (QUIC and/or TCP). */
  listen: string[];
  /** Addresses to announce instead of the listen addresses. */
  announce?: string[];
  /** Bootstrap peers (multiaddrs ending in /p2p/<peer id>). */
  bootstrap?: string[];
  /** Discover peers on the LAN (default true). */
  mdns?: boolean;
  /**
   * DHT client mode: query but do not serve records. For short-lived nodes (a one-off `infernet run`)
   * that should not enter other peers' routing tables. Default false (server).
   */
  dhtClient?: boolean;
  /** Infernet's own protocols, as libp2p services. */
  services?: ServiceFactoryMap;
}

function checkAddresses(kind: string, addrs: string[]): void {
  for (const a of addrs) {
    try {
      multiaddr(a);
    } catch (cause) {
      throw new ConfigError(`${kind} address "${a}" is not a valid multiaddr: ${errorMessage(cause)}`, {
        hint: 'e.g. "/ip4/0.0.0.0/udp/7707/quic-v1" or "/ip4/203.0.113.5/tcp/7707/p2p/12D3Koo..."',
      });
    }
  }
}

// biome-ignore lint/suspicious/noExplicitAny: service maps are open-ended
export type Host = Libp2p<ServiceMap & Record<string, any>>;

export async function createHost(init: HostInit): Promise<Host> {
  checkAddresses("listen", init.listen);
  checkAddresses("announce", init.announce ?? []);
  checkAddresses("bootstrap", init.bootstrap ?? []);
  const peerDiscovery = [];
  if (init.bootstrap?.length) peerDiscovery.push(bootstrap({ list: init.bootstrap, timeout: BOOTSTRAP_DELAY_MS }));
  if (init.mdns ?? true) peerDiscovery.push(mdns({ interval: MDNS_INTERVAL_MS }));
  try {
    return await createLibp2p({
      privateKey: init.privateKey,
      addresses: {
        listen: init.listen,
        ...(init.announce?.length ? { announce: init.announce } : {}),
      },
      transports: [quic(), tcp()],
      // Bun's node:crypto lacks chacha20-poly1305, so Noise must use its pure-JS cipher (QUIC is unaffected).
      connectionEncrypters: [noise({ crypto: pureJsCrypto })],
      streamMuxers: [yamux()],
      peerDiscovery,
      connectionManager: {
        maxConnections: MAX_CONNECTIONS,
        maxParallelDials: MAX_PARALLEL_DIALS,
        dialTimeout: DIAL_TIMEOUT_MS,
        inboundStreamProtocolNegotiationTimeout: PROTOCOL_NEGOTIATION_TIMEOUT_MS,
        outboundStreamProtocolNegotiationTimeout: PROTOCOL_NEGOTIATION_TIMEOUT_MS,
      },
      services: {
        identify: identify(),
        ping: ping(),
        // Peers dial our public addresses back: libp2p shares a public listen address only once one
        // confirmed it, and the dashboard's reachability comes from the same verdicts.
        autoNAT: autoNAT(),
        reachability: reachabilityService(),
        dht: kadDHT({
          protocol: KAD_PROTOCOL,
          clientMode: init.dhtClient ?? false,
          // Keep private and loopback addresses: Infernet runs on LANs and single machines too.
          peerInfoMapper: (peer) => peer,
          allowQueryWithZeroPeers: true,
        }),
        pubsub: gossipsub({
          allowPublishToZeroTopicPeers: true,
          heartbeatInterval: GOSSIP_HEARTBEAT_MS,
          emitSelf: false,
        }),
        ...init.services,
      },
    });
  } catch (cause) {
    throw new ConfigError(`cannot start the network node: ${conciseStartError(cause)}`, {
      hint: "check --listen (is the port in use?) and --bootstrap addresses",
      cause,
    });
  }
}

/** libp2p's listen failure lists every address with a stack trace; keep the address and the reason. */
function conciseStartError(err: unknown): string {
  const text = errorMessage(err);
  const failures = [...text.matchAll(/^\s*(\/\S+): (?:Error: )?([^\n]*)$/gm)].map(
    ([, addr, reason]) => `${addr}: ${reason?.replace(/^listen \S+: /, "")}`,
  );
  return failures.length ? `cannot listen on ${failures.join("; ")}` : (text.split("\n")[0] ?? text);
}
