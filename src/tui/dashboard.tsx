import { Box, Text } from "ink";
import type { ReactNode } from "react";
import { PANEL_TITLES, PANELS, type PanelId } from "./keymap.ts";
import { EarningsPanel } from "./panels/earnings.tsx";
import { HardwarePanel, hardwareLines } from "./panels/hardware.tsx";
import { HeaderPanel } from "./panels/header.tsx";
import { HelpOverlay } from "./panels/help.tsx";
import { JobDetails, JobsPanel, jobsRows } from "./panels/jobs.tsx";
import { LogPanel } from "./panels/log.tsx";
import { type Adding, ModelsOverlay, progressLine } from "./panels/models.tsx";
import { NetworkPanel } from "./panels/network.tsx";
import type { DashboardSnapshot, ModelChoice } from "./state.ts";
import type { Theme } from "./theme.ts";
import type { UiState } from "./ui.ts";

/** From this many columns every panel shows at once; below, one panel at a time with tabs. */
export const WIDE_MIN_COLUMNS = 120;
/** Rows the header takes. */
const HEADER_ROWS = 2;
/** Rows the footer (keys and notices) takes. */
const FOOTER_ROWS = 1;
/** Share of the wide layout's height the log gets. */
const WIDE_LOG_SHARE = 0.3;
/** Fewest rows a panel is drawn with (border, title, one line). */
const MIN_PANEL_ROWS = 4;

export interface StatusLine {
  /** The last poll failed: why (the previous snapshot stays on screen). */
  error?: string | undefined;
  /** A pause/resume is on its way to the node. */
  pending?: boolean;
  quitting?: boolean;
  /** The dashboard owns the node and is stopping it: requests and shards still running or queued. */
  draining?: number;
  /** A one-off message (a failed pause, say). */
  notice?: string | undefined;
}

export interface DashboardProps {
  snapshot: DashboardSnapshot | undefined;
  ui: UiState;
  theme: Theme;
  columns: number;
  rows: number;
  status: StatusLine;
  /** The dashboard owns the node (`infernet start`): `q` stops it. */
  owner?: boolean;
  /** The model manager's data (`m`). */
  models?: { choices: ModelChoice[] | undefined; adding: Adding | undefined };
}

/** The whole screen, as a pure function of the node's snapshot, the view state and the size. */
export function Dashboard({ snapshot, ui, theme, columns, rows, status, owner = false, models }: DashboardProps) {
  const wide = columns >= WIDE_MIN_COLUMNS;
  const bodyRows = Math.max(MIN_PANEL_ROWS, rows - HEADER_ROWS - FOOTER_ROWS - (wide ? 0 : 1));
  const selectedRow = snapshot && ui.details ? jobsRows(snapshot)[ui.scroll.jobs] : undefined;
  return (
    <Box flexDirection="column" width={columns}>
      {snapshot ? (
        <HeaderPanel
          node={snapshot.node}
          accepting={snapshot.serving.accepting}
          takenAt={snapshot.takenAt}
          theme={theme}
          wide={wide}
        />
      ) : (
        <Box flexDirection="column" height={HEADER_ROWS}>
          <Text bold color={theme.accent}>
            infernet dashboard
          </Text>
          <Text color={theme.muted}>{status.error ? "waiting for the node" : "connecting to the node…"}</Text>
        </Box>
      )}
      {wide ? null : <Tabs focus={ui.focus} theme={theme} />}
      {ui.help ? (
        <HelpOverlay theme={theme} width={columns} owner={owner} />
      ) : ui.models ? (
        <ModelsOverlay
          choices={models?.choices}
          cursor={ui.modelCursor}
          adding={models?.adding}
          notice={status.notice}
          theme={theme}
          width={columns}
          rows={bodyRows}
        />
      ) : selectedRow && snapshot ? (
        <JobDetails row={selectedRow} takenAt={snapshot.takenAt} theme={theme} width={columns} />
      ) : !snapshot ? (
        <Box height={bodyRows} />
      ) : wide ? (
        <Wide snapshot={snapshot} ui={ui} theme={theme} columns={columns} rows={bodyRows} />
      ) : (
        <FocusedPanel panel={ui.focus} snapshot={snapshot} ui={ui} theme={theme} width={columns} height={bodyRows} />
      )}
      <Footer status={status} ui={ui} theme={theme} owner={owner} adding={models?.adding} />
    </Box>
  );
}

function Tabs({ focus, theme }: { focus: PanelId; theme: Theme }) {
  return (
    <Text wrap="truncate-end">
      {PANELS.map((p) => (
        <Text key={p} bold={p === focus} inverse={p === focus} color={p === focus ? theme.accent : theme.muted}>
          {` ${PANEL_TITLES[p]} `}
        </Text>
      ))}
    </Text>
  );
}

interface PanelArgs {
  snapshot: DashboardSnapshot;
  ui: UiState;
  theme: Theme;
  width: number;
  height: number;
}

function FocusedPanel({ panel, ...args }: PanelArgs & { panel: PanelId }) {
  return <PanelById id={panel} {...args} />;
}

function PanelById({ id, snapshot, ui, theme, width, height }: PanelArgs & { id: PanelId }) {
  const focused = ui.focus === id;
  const common = { theme, focused, width, height };
  switch (id) {
    case "hardware":
      return <HardwarePanel hardware={snapshot.hardware} {...common} />;
    case "jobs":
      return (
        <JobsPanel
          rows={jobsRows(snapshot)}
          serving={snapshot.serving}
          takenAt={snapshot.takenAt}
          selected={ui.scroll.jobs}
          {...common}
        />
      );
    case "network":
      return (
        <NetworkPanel
          peers={snapshot.peers}
          filter={ui.filter}
          editing={ui.editingFilter}
          scroll={ui.scroll.network}
          {...common}
        />
      );
    case "earnings":
      return <EarningsPanel earnings={snapshot.earnings} {...common} />;
    case "log":
      return <LogPanel log={snapshot.log} back={ui.scroll.log} {...common} />;
  }
}

/**
 * Every panel: Hardware over Earnings on the left, Jobs over Network on the right, the log across
 * the bottom.
 */
function Wide({
  snapshot,
  ui,
  theme,
  columns,
  rows,
}: Omit<PanelArgs, "width" | "height"> & { columns: number; rows: number }) {
  const logRows = Math.max(MIN_PANEL_ROWS, Math.floor(rows * WIDE_LOG_SHARE));
  const top = Math.max(2 * MIN_PANEL_ROWS, rows - logRows);
  const left = Math.floor(columns * 0.45);
  const right = columns - left;
  const hardware = Math.min(top - MIN_PANEL_ROWS, hardwareLines(snapshot.hardware) + 3);
  const jobs = Math.floor(top / 2);
  const p = { snapshot, ui, theme };
  return (
    <Box flexDirection="column">
      <Box>
        <Box flexDirection="column" width={left}>
          <PanelById id="hardware" {...p} width={left} height={hardware} />
          <PanelById id="earnings" {...p} width={left} height={top - hardware} />
        </Box>
        <Box flexDirection="column" width={right}>
          <PanelById id="jobs" {...p} width={right} height={jobs} />
          <PanelById id="network" {...p} width={right} height={top - jobs} />
        </Box>
      </Box>
      <PanelById id="log" {...p} width={columns} height={logRows} />
    </Box>
  );
}

interface FooterProps {
  status: StatusLine;
  ui: UiState;
  theme: Theme;
  owner: boolean;
  adding: Adding | undefined;
}

function Footer({ status, ui, theme, owner, adding }: FooterProps) {
  let message: ReactNode;
  if (status.draining !== undefined) {
    message = (
      <Text color={theme.warn}>
        stopping the node: {status.draining} request(s)/shard(s) still running or queued, new work refused (q again
        stops now)
      </Text>
    );
  } else if (status.quitting)
    message = <Text color={theme.warn}>{owner ? "stopping the node…" : "quitting…"} (q again to force)</Text>;
  else if (ui.editingFilter) message = <Text>type a model name, enter to keep the filter, esc to clear it</Text>;
  else if (status.pending) message = <Text color={theme.warn}>asking the node to pause/resume serving…</Text>;
  else if (status.notice) message = <Text color={theme.warn}>{status.notice}</Text>;
  else if (status.error) message = <Text color={theme.bad}>node not answering: {status.error}</Text>;
  else if (adding && !ui.models) message = <Text color={theme.accent}>{progressLine(adding)}</Text>;
  else
    message = (
      <Text color={theme.muted}>
        ? help tab panels ↑↓ select p pause/resume m models / filter q {owner ? "stop node" : "quit"}
      </Text>
    );
  return <Text wrap="truncate-end">{message}</Text>;
}
