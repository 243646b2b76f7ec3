import { Text } from "ink";
import type { LogLine } from "../state.ts";
import type { Theme } from "../theme.ts";
import { Frame, innerLines } from "./frame.tsx";

export interface LogProps {
  log: LogLine[];
  theme: Theme;
  focused: boolean;
  width: number;
  height: number;
  /** Lines scrolled back from the newest (0 = follow the tail). */
  back: number;
}

const LEVEL_COLOR = (theme: Theme, level: string) =>
  level === "error" ? theme.bad : level === "warn" ? theme.warn : level === "debug" ? theme.muted : undefined;

/** "2026-11-26T02:21:42.123Z" -> "02:21:42"; anything else is shown as it came. */
function clock(t: string): string {
  const m = /T(\d\d:\d\d:\d\d)/.exec(t);
  return m?.[1] ?? t;
}

/** The window of the log `back` lines from its end (clamped so a full window always shows). */
export function logWindow(log: readonly LogLine[], lines: number, back: number): { rows: LogLine[]; back: number } {
  const b = Math.max(0, Math.min(back, log.length - lines));
  const end = log.length - b;
  return { rows: log.slice(Math.max(0, end - lines), end), back: b };
}

/** The node's newest log lines, oldest first, following the tail unless scrolled back. */
export function LogPanel({ log, theme, focused, width, height, back }: LogProps) {
  const { rows, back: b } = logWindow(log, innerLines(height), back);
  return (
    <Frame
      title="Log"
      note={b ? `${b} line${b === 1 ? "" : "s"} back (↓ to follow)` : undefined}
      focused={focused}
      theme={theme}
      width={width}
      height={height}
    >
      {log.length === 0 ? (
        <Text color={theme.muted}>nothing logged yet</Text>
      ) : (
        rows.map((line, i) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: log lines have no identity; position in the window is it
          <Text key={i} wrap="truncate-end">
            <Text color={theme.muted}>{clock(line.t)}</Text>{" "}
            <Text color={LEVEL_COLOR(theme, line.level)}>{line.level.padEnd(5)}</Text>{" "}
            <Text color={theme.muted}>{line.ns}</Text> {line.msg}
          </Text>
        ))
      )}
    </Frame>
  );
}
