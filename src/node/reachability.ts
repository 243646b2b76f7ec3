import type { AddressManager, NodeAddress } from "@libp2p/interface-internal";
import { isLinkLocal, isLoopback, isPrivate } from "@libp2p/utils";

/**
 * Whether peers outside this machine's network can dial this node, from what libp2p knows of its
 * own addresses. libp2p marks an address "verified" once it is safe to share: private and loopback
 * addresses at once (they are what they are), public listen and observed addresses only after
 * AutoNAT peers dialled them back (host.ts runs @libp2p/autonat), announce addresses because the
 * operator configured them (a port forward, say).
 *
 * - `public`: some public address is verified, so the wider network can reach the node.
 * - `private`: every address is loopback, link-local or private (RFC 1918, CGNAT): the node sits
 *   behind NAT or on a LAN, and peers outside it cannot dial it (it still dials out).
 * - `unknown`: a public address exists but no peer has confirmed it yet (too few peers, or the
 *   checks are still running).
 */
export type Reachability = "public" | "private" | "unknown";

export function reachabilityOf(addresses: readonly NodeAddress[]): Reachability {
  const open = addresses.filter(
    (a) => !isLoopback(a.multiaddr) && !isLinkLocal(a.multiaddr) && !isPrivate(a.multiaddr),
  );
  if (open.some((a) => a.verified)) return "public";
  return open.length === 0 ? "private" : "unknown";
}

export interface ReachabilityService {
  /** Reachability now; cheap (no network), so the dashboard may ask every second. */
  state(): Reachability;
}

/** A libp2p service that reads the address manager (which services get and the host does not expose). */
export function reachabilityService(): (components: { addressManager: AddressManager }) => ReachabilityService {
  return ({ addressManager }) => ({
    state: () => reachabilityOf(addressManager.getAddressesWithMetadata()),
  });
}
