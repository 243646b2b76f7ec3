import { Text } from "ink";
import { fit, maybe, shortId } from "../format.ts";
import type { PeerView } from "../state.ts";
import type { Theme } from "../theme.ts";
import { Frame, innerLines, position, visible } from "./frame.tsx";

export interface NetworkProps {
  peers: PeerView[];
  /** Only peers serving a model whose name contains this (case-insensitive); empty = all. */
  filter: string;
  /** The filter is being typed (a cursor shows after it). */
  editing: boolean;
  theme: Theme;
  focused: boolean;
  width: number;
  height: number;
  scroll: number;
}

/** Rows of the peer list in a panel of `height` (one line is the column header). */
export function peerRows(height: number): number {
  return Math.max(0, innerLines(height) - 1);
}

export function filterPeers(peers: readonly PeerView[], filter: string): PeerView[] {
  const f = filter.trim().toLowerCase();
  return f ? peers.filter((p) => p.models.some((m) => m.toLowerCase().includes(f))) : [...peers];
}

/**
 * Reputation as this node measured it: the share of its requests a peer completed, and out of how
 * many ("-" before any), since a ratio alone hides a peer seen twice.
 */
export function reputation(p: PeerView): string {
  const total = p.completed + p.failed;
  return total ? `${Math.round((100 * p.completed) / total)}% of ${total}` : "-";
}

/** Peers with their models, price, latency and reputation; connected ones first, then by latency. */
export function NetworkPanel({ peers, filter, editing, theme, focused, width, height, scroll }: NetworkProps) {
  const shown = filterPeers(peers, filter).sort(
    (a, b) => Number(b.connected) - Number(a.connected) || (a.latencyMs ?? Infinity) - (b.latencyMs ?? Infinity),
  );
  const { rows, start } = visible(shown, peerRows(height), scroll);
  const filterNote = editing ? `model: ${filter}▏` : filter ? `model: ${filter}` : undefined;
  const note = [filterNote, position(start, rows.length, shown.length)].filter(Boolean).join("  ");
  return (
    <Frame title="Network" note={note} focused={focused} theme={theme} width={width} height={height}>
      <Text bold wrap="truncate-end">
        {`${fit("peer", 10)} ${fit("price", 7)} ${fit("latency", 8)} ${fit("reputation", 11)} models`}
      </Text>
      {shown.length === 0 ? (
        <Text color={theme.muted} wrap="truncate-end">
          {filter ? `no known peer serves a model matching "${filter}"` : "no peers known yet"}
        </Text>
      ) : (
        rows.map((p) => (
          <Text key={p.peerId} wrap="truncate-end" color={p.connected ? undefined : theme.muted}>
            {`${fit(shortId(p.peerId), 10)} ${fit(p.price === undefined ? "?" : `${p.price} sat`, 7)} ${fit(
              maybe(p.latencyMs, " ms"),
              8,
            )} ${fit(reputation(p), 11)} ${p.models.join(", ") || "-"}${p.connected ? "" : " (offline)"}`}
          </Text>
        ))
      )}
    </Frame>
  );
}
