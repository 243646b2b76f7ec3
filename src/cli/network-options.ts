import type { OptionSpecs, ParsedValues } from "./args.ts";
import type { CliContext } from "./command.ts";

/** Flags every networked command takes. */
export const NETWORK_OPTIONS = {
  bootstrap: {
    type: "string",
    multiple: true,
    value: "MULTIADDR",
    description: "Bootstrap peer, e.g. /ip4/203.0.113.5/udp/7707/quic-v1/p2p/12D3Koo...",
  },
  listen: { type: "string", multiple: true, value: "MULTIADDR", description: "Address to listen on" },
  "no-mdns": { type: "boolean", description: "Do not look for peers on the LAN with mDNS" },
} as const satisfies OptionSpecs;

/** Puts the network flags into the config overrides (before the first `ctx.config()`). */
export function applyNetworkOptions(ctx: CliContext, values: ParsedValues<typeof NETWORK_OPTIONS>): void {
  if (values.bootstrap?.length) ctx.overrides.bootstrap = values.bootstrap;
  if (values.listen?.length) ctx.overrides.listen = values.listen;
  if (values["no-mdns"]) ctx.overrides.mdns = false;
}
