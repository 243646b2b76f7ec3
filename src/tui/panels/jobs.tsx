import { Text } from "ink";
import { bar, duration, fit } from "../format.ts";
import type { JobView, ServingView } from "../state.ts";
import type { Theme } from "../theme.ts";
import { Frame, innerLines, position, visible } from "./frame.tsx";

export interface JobsProps {
  jobs: JobView[];
  serving: ServingView;
  /** The snapshot's time: ages are measured on the node's clock. */
  takenAt: number;
  theme: Theme;
  focused: boolean;
  width: number;
  height: number;
  /** First job row shown. */
  scroll: number;
}

/** Cells of a job's progress bar. */
const JOB_BAR = 12;
/** Lines the serving summary above the job list takes. */
const SERVING_LINES = 2;

const STATE_COLOR = (theme: Theme, state: JobView["state"]) =>
  state === "verified" ? theme.ok : state === "failed" ? theme.bad : state === "running" ? theme.accent : theme.muted;

/** Rows the job list has in a panel of `height`. */
export function jobRows(height: number): number {
  return Math.max(0, innerLines(height) - SERVING_LINES);
}

/** What this node computes for others, then the batch jobs it holds as an aggregator, newest first. */
export function JobsPanel({ jobs, serving, takenAt, theme, focused, width, height, scroll }: JobsProps) {
  const sorted = [...jobs].sort((a, b) => b.createdAt - a.createdAt);
  const { rows, start } = visible(sorted, jobRows(height), scroll);
  const models = serving.models.map((m) => m.name).join(", ");
  const rate = serving.ratePerSecond === undefined ? "" : `  ${serving.ratePerSecond.toFixed(1)}/s`;
  return (
    <Frame
      title="Jobs"
      note={position(start, rows.length, sorted.length)}
      focused={focused}
      theme={theme}
      width={width}
      height={height}
    >
      <Text wrap="truncate-end">
        {"serving "}
        {models ? <Text bold>{models}</Text> : <Text color={theme.muted}>no models</Text>}
        {serving.accepting ? "" : <Text color={theme.warn}> (paused: taking no new work)</Text>}
      </Text>
      <Text wrap="truncate-end" color={theme.muted}>
        {`  ${serving.active} running  ${serving.queued} queued  ${serving.served} served  ${serving.failed} failed${rate}`}
      </Text>
      {sorted.length === 0 ? (
        <Text color={theme.muted} wrap="truncate-end">
          no batch jobs held here (an aggregator holds the jobs clients submit)
        </Text>
      ) : (
        rows.map((job) => <JobRow key={job.id} job={job} takenAt={takenAt} theme={theme} />)
      )}
    </Frame>
  );
}

function JobRow({ job, takenAt, theme }: { job: JobView; takenAt: number; theme: Theme }) {
  const done = job.shardCount ? job.shardsVerified / job.shardCount : 0;
  const age = duration((job.finishedAt ?? takenAt) - job.createdAt);
  return (
    <Text wrap="truncate-end">
      {`${fit(job.id.slice(0, 8), 8)} ${fit(job.model, 12)} `}
      <Text color={STATE_COLOR(theme, job.state)}>{bar(done, JOB_BAR)}</Text>
      {` ${`${job.shardsVerified}/${job.shardCount}`.padStart(7)} `}
      <Text color={STATE_COLOR(theme, job.state)}>{fit(job.state, 8)}</Text>
      {` retries ${job.retries}  ${job.finishedAt ? "took" : "age"} ${age}`}
      {job.error ? <Text color={theme.bad}>{`  ${job.error}`}</Text> : null}
    </Text>
  );
}
