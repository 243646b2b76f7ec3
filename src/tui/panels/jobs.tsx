import { Box, Text } from "ink";
import { bar, duration, fit, shortId } from "../format.ts";
import type { DashboardSnapshot, JobView, ServingView, WorkView } from "../state.ts";
import type { Theme } from "../theme.ts";
import { Frame, innerLines, position, visible } from "./frame.tsx";

export interface JobsProps {
  rows: JobsRow[];
  serving: ServingView;
  /** The snapshot's time: ages are measured on the node's clock. */
  takenAt: number;
  theme: Theme;
  focused: boolean;
  width: number;
  height: number;
  /** The selected row (enter shows it in full). */
  selected: number;
}

/** A row of the Jobs panel: a batch job this node holds as an aggregator, or work it computes for a peer. */
export type JobsRow = { type: "job"; job: JobView } | { type: "work"; work: WorkView };

/** Cells of a progress bar. */
const BAR = 10;
/** Cells of the model name column. */
const MODEL = 11;
/** Lines the serving summary above the rows takes. */
const SERVING_LINES = 2;

const JOB_COLOR = (theme: Theme, state: JobView["state"]) =>
  state === "verified" ? theme.ok : state === "failed" ? theme.bad : state === "running" ? theme.accent : theme.muted;

const WORK_COLOR = (theme: Theme, outcome: WorkView["outcome"]) =>
  outcome === "done" ? theme.ok : outcome === "failed" ? theme.bad : theme.accent;

/** The panel's rows: jobs held as aggregator (newest first), then the work computed here (running first). */
export function jobsRows(snapshot: DashboardSnapshot): JobsRow[] {
  const jobs = [...snapshot.jobs].sort((a, b) => b.createdAt - a.createdAt);
  return [
    ...jobs.map((job): JobsRow => ({ type: "job", job })),
    ...snapshot.serving.work.map((work): JobsRow => ({ type: "work", work })),
  ];
}

/** Rows the list has in a panel of `height`. */
export function jobRows(height: number): number {
  return Math.max(0, innerLines(height) - SERVING_LINES);
}

/** Units per second of a piece of work, over its whole run so far. */
export function workRate(work: WorkView, now: number): number | undefined {
  const seconds = ((work.endedAt ?? now) - work.startedAt) / 1000;
  return seconds > 0 && work.done > 0 ? work.done / seconds : undefined;
}

/** Milliseconds left at the rate so far; undefined when the total or the rate is unknown. */
export function workEta(work: WorkView, now: number): number | undefined {
  const rate = workRate(work, now);
  if (work.outcome !== "running" || work.total === undefined || rate === undefined) return undefined;
  return (Math.max(0, work.total - work.done) / rate) * 1000;
}

/** What this node computes for others, then the batch jobs it holds as an aggregator, newest first. */
export function JobsPanel({ rows, serving, takenAt, theme, focused, width, height, selected }: JobsProps) {
  // The window follows the selection: the selected row is always on screen.
  const lines = jobRows(height);
  const window = visible(rows, lines, Math.max(0, selected - lines + 1));
  const models = serving.models.map((m) => m.name).join(", ");
  const rate = serving.ratePerSecond === undefined ? "" : `  ${serving.ratePerSecond.toFixed(1)}/s`;
  return (
    <Frame
      title="Jobs"
      note={position(window.start, window.rows.length, rows.length)}
      focused={focused}
      theme={theme}
      width={width}
      height={height}
    >
      <Text wrap="truncate-end">
        {"serving "}
        {models ? <Text bold>{models}</Text> : <Text color={theme.muted}>no models (m adds one)</Text>}
        {serving.accepting ? "" : <Text color={theme.warn}> (paused: taking no new work)</Text>}
      </Text>
      <Text wrap="truncate-end" color={theme.muted}>
        {`  ${serving.active} running  ${serving.queued} queued  ${serving.served} served  ${serving.failed} failed${rate}`}
      </Text>
      {rows.length === 0 ? (
        <Text color={theme.muted} wrap="truncate-end">
          no work yet: requests, shards and batch jobs show here
        </Text>
      ) : (
        window.rows.map((row, i) => {
          const isSelected = focused && window.start + i === selected;
          return row.type === "job" ? (
            <JobLine key={`j${row.job.id}`} job={row.job} takenAt={takenAt} theme={theme} selected={isSelected} />
          ) : (
            <WorkLine key={`w${row.work.id}`} work={row.work} takenAt={takenAt} theme={theme} selected={isSelected} />
          );
        })
      )}
    </Frame>
  );
}

interface LineProps {
  takenAt: number;
  theme: Theme;
  selected: boolean;
}

/** A marker before the selected row, so the selection shows without colour too. */
const marker = (selected: boolean) => (selected ? "› " : "  ");

function JobLine({ job, takenAt, theme, selected }: LineProps & { job: JobView }) {
  const done = job.shardCount ? job.shardsVerified / job.shardCount : 0;
  const age = duration((job.finishedAt ?? takenAt) - job.createdAt);
  return (
    <Text wrap="truncate-end" inverse={selected}>
      {`${marker(selected)}job ${fit(job.id.slice(0, 8), 8)} ${fit(job.model, MODEL)} `}
      <Text color={JOB_COLOR(theme, job.state)}>{bar(done, BAR)}</Text>
      {` ${`${job.shardsVerified}/${job.shardCount}`.padStart(7)} `}
      <Text color={JOB_COLOR(theme, job.state)}>{fit(job.state, 8)}</Text>
      {` retries ${job.retries} ${job.finishedAt ? "took" : "age"} ${age}`}
      {job.error ? <Text color={theme.bad}>{`  ${job.error}`}</Text> : null}
    </Text>
  );
}

function WorkLine({ work, takenAt, theme, selected }: LineProps & { work: WorkView }) {
  const rate = workRate(work, takenAt);
  const eta = workEta(work, takenAt);
  const count = work.total === undefined ? `${work.done}` : `${work.done}/${work.total}`;
  const tail =
    work.outcome === "running"
      ? `${rate === undefined ? "" : ` ${perSecond(rate)}`}${eta === undefined ? "" : ` ETA ${duration(eta)}`}`
      : ` took ${duration((work.endedAt ?? takenAt) - work.startedAt)}`;
  return (
    <Text wrap="truncate-end" inverse={selected}>
      {`${marker(selected)}${fit(work.kind, 7)} ${fit(work.model, MODEL)} ${shortId(work.peer)} `}
      <Text color={WORK_COLOR(theme, work.outcome)}>
        {bar(work.total ? work.done / work.total : work.outcome === "done" ? 1 : undefined, BAR)}
      </Text>
      {` ${count.padStart(8)} ${work.unit === "tokens" ? "tok" : "rec"} `}
      <Text color={WORK_COLOR(theme, work.outcome)}>{work.outcome}</Text>
      {tail}
      {work.error ? <Text color={theme.bad}>{`  ${work.error}`}</Text> : null}
    </Text>
  );
}

/** "150/s", "2.5/s": whole units from 100 up. */
function perSecond(rate: number): string {
  return `${rate >= 100 ? rate.toFixed(0) : rate.toFixed(1)}/s`;
}

/** The selected row in full (enter on the Jobs panel). */
export function JobDetails({
  row,
  takenAt,
  theme,
  width,
}: {
  row: JobsRow;
  takenAt: number;
  theme: Theme;
  width: number;
}) {
  const fields: [string, string][] =
    row.type === "job"
      ? [
          ["job", row.job.id],
          ["model", row.job.model],
          ["state", row.job.state],
          ["shards", `${row.job.shardsVerified} of ${row.job.shardCount} verified`],
          ["retries", String(row.job.retries)],
          ["created", new Date(row.job.createdAt).toISOString()],
          [row.job.finishedAt ? "took" : "age", duration((row.job.finishedAt ?? takenAt) - row.job.createdAt)],
          ...(row.job.error ? ([["error", row.job.error]] as [string, string][]) : []),
          ["report", `infernet job ${row.job.id} (on this node)`],
        ]
      : workFields(row.work, takenAt);
  return (
    <Box flexDirection="column" borderStyle="double" borderColor={theme.focus} paddingX={1} width={width}>
      <Text bold color={theme.accent}>
        {row.type === "job" ? "Batch job (held here as aggregator)" : `${row.work.kind} computed here`}
      </Text>
      {fields.map(([k, v]) => (
        <Text key={k} wrap="truncate-end">
          <Text bold>{k.padEnd(10)}</Text>
          {v}
        </Text>
      ))}
      <Text color={theme.muted}>enter or esc closes</Text>
    </Box>
  );
}

function workFields(work: WorkView, takenAt: number): [string, string][] {
  const rate = workRate(work, takenAt);
  const eta = workEta(work, takenAt);
  return [
    ["model", work.model],
    ["for", `${work.peer} (${work.kind === "shard" ? "aggregator" : "client"})`],
    ["progress", `${work.done}${work.total === undefined ? "" : ` of ${work.total}`} ${work.unit}`],
    ["outcome", work.outcome],
    ["rate", rate === undefined ? "?" : `${rate.toFixed(1)} ${work.unit}/s`],
    ["started", new Date(work.startedAt).toISOString()],
    work.outcome === "running"
      ? ["ETA", eta === undefined ? "?" : duration(eta)]
      : ["took", duration((work.endedAt ?? takenAt) - work.startedAt)],
    ...(work.error ? ([["error", work.error]] as [string, string][]) : []),
  ];
}
