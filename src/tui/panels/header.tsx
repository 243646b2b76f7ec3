import { Box, Text } from "ink";
import { duration, shortId } from "../format.ts";
import type { DashboardSnapshot } from "../state.ts";
import type { Theme } from "../theme.ts";

export interface HeaderProps {
  node: DashboardSnapshot["node"];
  accepting: boolean;
  /** When the snapshot was taken, so uptime is the node's own, not this terminal's clock. */
  takenAt: number;
  theme: Theme;
  /** Narrow terminals show the first address and a count of the rest. */
  wide: boolean;
}

const REACHABILITY_WORDS: Record<DashboardSnapshot["node"]["reachability"], string> = {
  public: "reachable (public)",
  private: "behind NAT (private)",
  unknown: "reachability unknown",
};

/** A listen address without this node's own `/p2p/<id>` suffix (the id is on the line above). */
function bare(address: string, peerId: string): string {
  return address.endsWith(`/p2p/${peerId}`) ? address.slice(0, -`/p2p/${peerId}`.length) : address;
}

/** Two lines: who this node is and whether it serves; then how it is connected and where it listens. */
export function HeaderPanel({ node, accepting, takenAt, theme, wide }: HeaderProps) {
  const reach = node.reachability;
  const reachColor = reach === "public" ? theme.ok : reach === "private" ? theme.warn : theme.muted;
  const modes = node.modes.length ? node.modes.join("+") : "client";
  const addresses = node.addresses.map((a) => bare(a, node.peerId));
  const [first, ...rest] = addresses;
  const listening = !first
    ? "not listening"
    : wide
      ? `listening ${addresses.join("  ")}`
      : `listening ${first}${rest.length ? ` (+${rest.length} more)` : ""}`;
  return (
    <Box flexDirection="column">
      <Text wrap="truncate-end">
        <Text bold color={theme.accent}>
          infernet {node.version}
        </Text>
        {"  node "}
        <Text bold>{wide ? node.peerId : shortId(node.peerId)}</Text>
        {`  ${modes}  up ${duration(takenAt - node.startedAt)}  `}
        {accepting ? (
          <Text color={theme.ok}>serving</Text>
        ) : (
          <Text bold color={theme.warn}>
            PAUSED
          </Text>
        )}
      </Text>
      <Text wrap="truncate-end">
        <Text color={reachColor}>{REACHABILITY_WORDS[reach]}</Text>
        {`  ${node.connections} connection${node.connections === 1 ? "" : "s"}  `}
        <Text color={theme.muted}>{listening}</Text>
      </Text>
    </Box>
  );
}
