import { generateKeyPair } from "@libp2p/crypto/keys";
import type { ServiceFactoryMap } from "libp2p";
import { createHost, type Host } from "../../host.ts";
import { varint } from "../../wire.ts";

/**
 * Test support: real libp2p hosts (the production `createHost`) listening on QUIC on 127.0.0.1 with
 * a fresh key, mDNS off, no bootstrap. Disposing stops the host.
 */
export type TestHost = Host & AsyncDisposable;

export async function testHost(services: ServiceFactoryMap = {}): Promise<TestHost> {
  const host = await createHost({
    privateKey: await generateKeyPair("Ed25519"),
    listen: ["/ip4/127.0.0.1/udp/0/quic-v1"],
    mdns: false,
    services,
  });
  return Object.assign(host, { [Symbol.asyncDispose]: async () => await host.stop() });
}

/** Connects `a` to `b` over QUIC (so later streams need no dial). */
export async function connect(a: Host, b: Host): Promise<void> {
  const addr = b.getMultiaddrs().find((m) => m.toString().includes("/quic-v1"));
  if (!addr) throw new Error("the host has no QUIC address");
  await a.dial(addr);
}

export { varint };

/** `payload` behind its length prefix: one frame as the wire carries it. */
export function framed(payload: Uint8Array): Uint8Array {
  const prefix = varint(payload.length);
  const out = new Uint8Array(prefix.length + payload.length);
  out.set(prefix);
  out.set(payload, prefix.length);
  return out;
}
