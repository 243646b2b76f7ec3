import { useApp, useInput, useWindowSize } from "ink";
import { useCallback, useEffect, useRef, useState } from "react";
import { errorMessage } from "../util/errors.ts";
import { Dashboard, type StatusLine } from "./dashboard.tsx";
import { actionFor, filterActionFor } from "./keymap.ts";
import { filterPeers } from "./panels/network.tsx";
import type { DashboardSnapshot } from "./state.ts";
import { themeFor } from "./theme.ts";
import { INITIAL_UI, reduceFilter, reduceUi, type UiState } from "./ui.ts";

/**
 * What the dashboard needs from the node: the control API's dashboard snapshot and the one action
 * it takes. `DashboardClient` (tui/client.ts) is the real one; tests pass a fake that records calls.
 */
export interface DashboardSource {
  snapshot(signal?: AbortSignal): Promise<DashboardSnapshot>;
  setServing(on: boolean, signal?: AbortSignal): Promise<unknown>;
}

/** How often the node is asked for a new snapshot. */
export const POLL_INTERVAL_MS = 1_000;
/** A second `q` within this long quits at once, without waiting for a pause/resume in flight. */
export const QUIT_FORCE_WINDOW_MS = 3_000;

export interface AppProps {
  source: DashboardSource;
  /** NO_COLOR: no colour props anywhere. */
  mono: boolean;
  /** A fixed size instead of the terminal's (tests). */
  size?: { columns: number; rows: number };
  pollMs?: number;
}

/** The dashboard: polls the node, keeps the view state, turns keys into actions. */
export function App({ source, mono, size, pollMs = POLL_INTERVAL_MS }: AppProps) {
  const { exit } = useApp();
  const terminal = useWindowSize();
  const [snapshot, setSnapshot] = useState<DashboardSnapshot>();
  const [ui, setUi] = useState<UiState>(INITIAL_UI);
  const [status, setStatus] = useState<StatusLine>({});
  const snapshotRef = useRef<DashboardSnapshot | undefined>(undefined);
  const pending = useRef<Promise<unknown> | undefined>(undefined);
  const quitAt = useRef<number | undefined>(undefined);
  const polling = useRef(new AbortController());
  const refresh = useRef<() => void>(() => {});

  useEffect(() => {
    const controller = polling.current;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      clearTimeout(timer);
      try {
        const next = await source.snapshot(controller.signal);
        if (controller.signal.aborted) return;
        snapshotRef.current = next;
        setSnapshot(next);
        setStatus((s) => (s.error ? { ...s, error: undefined } : s));
      } catch (err) {
        if (controller.signal.aborted) return;
        setStatus((s) => ({ ...s, error: errorMessage(err) }));
      }
      timer = setTimeout(poll, pollMs);
    };
    refresh.current = () => void poll();
    void poll();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [source, pollMs]);

  const toggleServing = useCallback(() => {
    const current = snapshotRef.current;
    if (!current || pending.current) return;
    setStatus((s) => ({ ...s, pending: true, notice: undefined }));
    const call = source.setServing(!current.serving.accepting).then(
      () => {
        setStatus((s) => ({ ...s, pending: false }));
        if (!polling.current.signal.aborted) refresh.current();
      },
      (err: unknown) =>
        setStatus((s) => ({ ...s, pending: false, notice: `pause/resume failed: ${errorMessage(err)}` })),
    );
    pending.current = call.finally(() => {
      pending.current = undefined;
    });
  }, [source]);

  const quit = useCallback(() => {
    const now = Date.now();
    if (quitAt.current !== undefined && now - quitAt.current <= QUIT_FORCE_WINDOW_MS) {
      exit();
      return;
    }
    quitAt.current = now;
    polling.current.abort();
    // A pause/resume the node is carrying out is let finish, so the dashboard never leaves serving
    // in a state the user did not see; with nothing in flight there is nothing to wait for.
    const inFlight = pending.current;
    if (!inFlight) {
      exit();
      return;
    }
    setStatus((s) => ({ ...s, quitting: true }));
    void inFlight.finally(() => exit());
  }, [exit]);

  useInput((input, key) => {
    if (ui.editingFilter) {
      const action = filterActionFor(input, key);
      if (action) setUi((u) => reduceFilter(u, action));
      return;
    }
    const action = actionFor(input, key);
    if (!action) return;
    if (status.notice) setStatus((s) => ({ ...s, notice: undefined }));
    if (action === "quit") return quit();
    if (action === "toggle-serving") return toggleServing();
    setUi((u) => reduceUi(u, action, itemsIn(u, snapshotRef.current)));
  });

  const { columns, rows } = size ?? terminal;
  return <Dashboard snapshot={snapshot} ui={ui} theme={themeFor(mono)} columns={columns} rows={rows} status={status} />;
}

/** Rows the focused panel scrolls through. */
function itemsIn(ui: UiState, snapshot: DashboardSnapshot | undefined): number {
  if (!snapshot) return 0;
  switch (ui.focus) {
    case "jobs":
      return snapshot.jobs.length;
    case "network":
      return filterPeers(snapshot.peers, ui.filter).length;
    case "log":
      return snapshot.log.length;
    default:
      return 0;
  }
}
