import { expect, test } from "bun:test";
import type { AddressType, NodeAddress } from "@libp2p/interface-internal";
import { multiaddr } from "@multiformats/multiaddr";
import { reachabilityOf } from "./reachability.ts";

/** TEST-NET ranges count as private to libp2p, so these are real public addresses (example.com, a CDN). */
const at = (addr: string, verified: boolean, type: AddressType = "transport"): NodeAddress => ({
  multiaddr: multiaddr(addr),
  verified,
  type,
  expires: Date.now() + 60_000,
});

test("only loopback, LAN and CGNAT addresses: private (peers outside cannot dial in)", () => {
  expect(
    reachabilityOf([
      at("/ip4/127.0.0.1/udp/7707/quic-v1", true),
      at("/ip4/192.168.1.20/tcp/7707", true),
      at("/ip4/10.0.0.6/udp/7707/quic-v1", true),
      at("/ip4/100.64.3.9/tcp/7707", true),
      at("/ip6/::1/tcp/7707", true),
      at("/ip6/fe80::1/tcp/7707", true),
    ]),
  ).toBe("private");
  expect(reachabilityOf([])).toBe("private");
});

test("a public address nobody confirmed yet: unknown; once AutoNAT confirms it (or one is announced): public", () => {
  const lan = at("/ip4/192.168.1.20/tcp/7707", true);
  expect(reachabilityOf([lan, at("/ip4/93.184.216.34/udp/7707/quic-v1", false)])).toBe("unknown");
  expect(reachabilityOf([lan, at("/ip4/93.184.216.34/udp/7707/quic-v1", false, "observed")])).toBe("unknown");
  expect(reachabilityOf([lan, at("/ip4/93.184.216.34/udp/7707/quic-v1", true)])).toBe("public");
  expect(reachabilityOf([lan, at("/ip4/151.101.1.69/tcp/7707", true, "observed")])).toBe("public");
  expect(reachabilityOf([at("/ip4/151.101.1.69/tcp/7707", true, "announce")])).toBe("public");
});
