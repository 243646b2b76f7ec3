import { useCallback, useEffect, useRef, useState } from "react";
import { errorMessage } from "../util/errors.ts";
import type { DashboardSnapshot } from "./state.ts";

/**
 * Polls the node for a snapshot every `pollMs`, one request at a time (a slow node is never asked
 * twice at once). A failed poll keeps the last snapshot on screen and reports why. `onSnapshot` sees
 * every new snapshot (the app's drain check runs there).
 */
export function useSnapshots(
  snapshot: (signal: AbortSignal) => Promise<DashboardSnapshot>,
  pollMs: number,
  onSnapshot: (s: DashboardSnapshot) => void,
): {
  snapshot: DashboardSnapshot | undefined;
  error: string | undefined;
  /** The latest snapshot, for key handlers (no re-render needed to read it). */
  latest: { current: DashboardSnapshot | undefined };
  /** Polls now instead of waiting for the timer. */
  refresh: () => void;
  /** Stops polling for good (quitting). */
  stop: () => void;
} {
  const [state, setState] = useState<{ snapshot?: DashboardSnapshot; error?: string }>({});
  const latest = useRef<DashboardSnapshot | undefined>(undefined);
  const controller = useRef(new AbortController());
  const refreshRef = useRef<() => void>(() => {});
  const onSnapshotRef = useRef(onSnapshot);
  onSnapshotRef.current = onSnapshot;

  useEffect(() => {
    const polling = new AbortController();
    controller.current = polling;
    const { signal } = polling;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let inFlight = false;
    const poll = async () => {
      clearTimeout(timer);
      if (inFlight || signal.aborted) return;
      inFlight = true;
      try {
        const next = await snapshot(signal);
        if (signal.aborted) return;
        latest.current = next;
        setState({ snapshot: next });
        onSnapshotRef.current(next);
      } catch (err) {
        if (signal.aborted) return;
        setState((s) => ({ ...s, error: errorMessage(err) }));
      } finally {
        inFlight = false;
      }
      if (!signal.aborted) timer = setTimeout(poll, pollMs);
    };
    refreshRef.current = () => void poll();
    void poll();
    return () => {
      polling.abort();
      clearTimeout(timer);
    };
  }, [snapshot, pollMs]);

  // Stable across renders, so callbacks that use them need not be made again each second.
  const refresh = useCallback(() => refreshRef.current(), []);
  const stop = useCallback(() => controller.current.abort(), []);
  return { snapshot: state.snapshot, error: state.error, latest, refresh, stop };
}
