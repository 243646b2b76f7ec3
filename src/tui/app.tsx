import { type Key, useApp, useInput, useWindowSize } from "ink";
import { useCallback, useRef, useState } from "react";
import { errorMessage } from "../util/errors.ts";
import { Dashboard, type StatusLine } from "./dashboard.tsx";
import { actionFor, filterActionFor, keysIn, modelsActionFor } from "./keymap.ts";
import { jobsRows } from "./panels/jobs.tsx";
import type { Adding } from "./panels/models.tsx";
import { filterPeers } from "./panels/network.tsx";
import type { DashboardSnapshot, ModelChoice, ServeProgress } from "./state.ts";
import { themeFor } from "./theme.ts";
import { INITIAL_UI, reduceFilter, reduceModels, reduceUi, type UiState } from "./ui.ts";
import { useSnapshots } from "./use-snapshots.ts";

/**
 * What the dashboard needs from the node: the control API's snapshot and the actions it takes.
 * `DashboardClient` (tui/client.ts) is the real one; tests pass a fake that records calls.
 */
export interface DashboardSource {
  snapshot(signal?: AbortSignal): Promise<DashboardSnapshot>;
  setServing(on: boolean, signal?: AbortSignal): Promise<unknown>;
  models(signal?: AbortSignal): Promise<ModelChoice[]>;
  serveModel(name: string, onProgress: (p: ServeProgress) => void, signal?: AbortSignal): Promise<void>;
  unserveModel(name: string, signal?: AbortSignal): Promise<void>;
}

/** How often the node is asked for a new snapshot. */
export const POLL_INTERVAL_MS = 1_000;
/** A second `q` within this long quits at once, without waiting for work or a pause in flight. */
export const QUIT_FORCE_WINDOW_MS = 3_000;

export interface AppProps {
  source: DashboardSource;
  /** NO_COLOR: no colour props anywhere. */
  mono: boolean;
  /**
   * The dashboard owns the node (`infernet start` on a terminal): `q` stops taking work, waits for
   * what runs to finish, then exits (and the node stops). Otherwise it only detaches.
   */
  owner?: boolean;
  /** A fixed size instead of the terminal's (tests). */
  size?: { columns: number; rows: number };
  pollMs?: number;
}

/** Work the node is still doing for others: what a drain waits for. */
function inFlight(s: DashboardSnapshot): number {
  return s.serving.active + s.serving.queued;
}

/** The dashboard: polls the node, keeps the view state, turns keys into actions. */
export function App({ source, mono, owner = false, size, pollMs = POLL_INTERVAL_MS }: AppProps) {
  const { exit } = useApp();
  const terminal = useWindowSize();
  const [ui, setUiState] = useState<UiState>(INITIAL_UI);
  // Keys can arrive faster than React re-renders (a paste, a quick "j" then enter): handlers read and
  // update the view state through this ref, so each key sees the one before it.
  const uiRef = useRef<UiState>(INITIAL_UI);
  const setUi = useCallback((next: (u: UiState) => UiState) => {
    uiRef.current = next(uiRef.current);
    setUiState(uiRef.current);
  }, []);
  const [status, setStatus] = useState<StatusLine>({});
  const [choices, setChoices] = useState<ModelChoice[]>();
  const [adding, setAdding] = useState<Adding>();
  const pending = useRef<Promise<unknown> | undefined>(undefined);
  const quitAt = useRef<number | undefined>(undefined);
  const draining = useRef(false);
  const actions = useRef(new AbortController());

  const onSnapshot = useCallback(
    (s: DashboardSnapshot) => {
      if (!draining.current) return;
      const left = inFlight(s);
      if (left === 0) exit();
      else setStatus((st) => ({ ...st, draining: left }));
    },
    [exit],
  );
  const snapshotOf = useCallback((signal: AbortSignal) => source.snapshot(signal), [source]);
  const node = useSnapshots(snapshotOf, pollMs, onSnapshot);
  const { refresh, stop: stopPolling, latest } = node;

  const notice = useCallback((text: string) => setStatus((s) => ({ ...s, notice: text })), []);

  const setServing = useCallback(
    (on: boolean) => {
      setStatus((s) => ({ ...s, pending: true, notice: undefined }));
      const call = source.setServing(on, actions.current.signal).then(
        () => {
          setStatus((s) => ({ ...s, pending: false }));
          refresh();
        },
        (err: unknown) =>
          setStatus((s) => ({ ...s, pending: false, notice: `pause/resume failed: ${errorMessage(err)}` })),
      );
      pending.current = call.finally(() => {
        pending.current = undefined;
      });
      return pending.current;
    },
    [source, refresh],
  );

  const loadModels = useCallback(() => {
    source.models(actions.current.signal).then(setChoices, (err: unknown) => {
      setChoices([]);
      notice(`cannot list the models: ${errorMessage(err)}`);
    });
  }, [source, notice]);

  const toggleModel = useCallback(
    (choice: ModelChoice) => {
      if (choice.served) {
        source.unserveModel(choice.name, actions.current.signal).then(
          () => {
            notice(`${choice.name} is no longer served (running work on it finishes)`);
            loadModels();
            refresh();
          },
          (err: unknown) => notice(`could not stop serving ${choice.name}: ${errorMessage(err)}`),
        );
        return;
      }
      if (adding) {
        notice(`one model at a time: ${adding.name} is still being added`);
        return;
      }
      setStatus((s) => ({ ...s, notice: undefined }));
      setAdding({ name: choice.name, progress: undefined });
      source
        .serveModel(choice.name, (progress) => setAdding({ name: choice.name, progress }), actions.current.signal)
        .then(
          () => notice(`${choice.name} is served`),
          (err: unknown) => notice(`could not serve ${choice.name}: ${errorMessage(err)}`),
        )
        .finally(() => {
          setAdding(undefined);
          loadModels();
          refresh();
        });
    },
    [source, adding, loadModels, notice, refresh],
  );

  const quit = useCallback(() => {
    const now = Date.now();
    const again = quitAt.current !== undefined && now - quitAt.current <= QUIT_FORCE_WINDOW_MS;
    quitAt.current = now;
    const leave = () => {
      stopPolling();
      actions.current.abort();
      exit();
    };
    if (again) return leave();
    setStatus((s) => ({ ...s, quitting: true }));
    if (owner) {
      // Stop taking work, then leave once nothing runs: the next snapshots tell (onSnapshot).
      const s = latest.current;
      if (!s || inFlight(s) === 0) return leave();
      draining.current = true;
      setStatus((st) => ({ ...st, draining: inFlight(s) }));
      if (s.serving.accepting && s.serving.models.length > 0 && !pending.current) void setServing(false);
      refresh();
      return;
    }
    stopPolling();
    // A pause/resume the node is carrying out is let finish, so the dashboard never leaves serving
    // in a state the user did not see; with nothing in flight there is nothing to wait for.
    const call = pending.current;
    if (!call) return leave();
    void call.finally(leave);
  }, [exit, owner, latest, refresh, stopPolling, setServing]);

  useInput((chunk, chunkKey) => {
    for (const [input, key] of keysIn(chunk, chunkKey, uiRef.current.editingFilter)) onKey(input, key);
  });

  const onKey = (input: string, key: Key) => {
    const ui = uiRef.current;
    if (ui.editingFilter) {
      const action = filterActionFor(input, key);
      if (action) setUi((u) => reduceFilter(u, action));
      return;
    }
    if (ui.models) {
      const action = modelsActionFor(input, key);
      if (!action) return;
      if (action === "models-toggle") {
        const choice = choices?.[ui.modelCursor];
        if (choice) toggleModel(choice);
        return;
      }
      setUi((u) => reduceModels(u, action, choices?.length ?? 0));
      return;
    }
    const action = actionFor(input, key);
    if (!action) return;
    if (status.notice) setStatus((s) => ({ ...s, notice: undefined }));
    if (action === "quit") return quit();
    if (action === "toggle-serving") {
      const s = latest.current;
      if (s && !pending.current && !draining.current) void setServing(!s.serving.accepting);
      return;
    }
    if (action === "models") loadModels();
    setUi((u) => reduceUi(u, action, itemsIn(u, latest.current)));
  };

  const { columns, rows } = size ?? terminal;
  return (
    <Dashboard
      snapshot={node.snapshot}
      ui={ui}
      theme={themeFor(mono)}
      columns={columns}
      rows={rows}
      status={{ ...status, error: node.error }}
      owner={owner}
      models={{ choices, adding }}
    />
  );
}

/** Rows the focused panel scrolls through. */
function itemsIn(ui: UiState, snapshot: DashboardSnapshot | undefined): number {
  if (!snapshot) return 0;
  switch (ui.focus) {
    case "jobs":
      return jobsRows(snapshot).length;
    case "network":
      return filterPeers(snapshot.peers, ui.filter).length;
    case "log":
      return snapshot.log.length;
    default:
      return 0;
  }
}
