import { Box, Text } from "ink";
import type { ReactNode } from "react";
import type { Theme } from "../theme.ts";

export interface FrameProps {
  title: string;
  focused: boolean;
  theme: Theme;
  /** Outer size in cells, borders included. */
  width: number;
  height: number;
  /** Extra words after the title (a filter, a scroll position). */
  note?: string | undefined;
  children: ReactNode;
}

/**
 * A bordered panel. The focused one has a double border and a marker before its title, so focus
 * shows without colour (NO_COLOR) too.
 */
export function Frame({ title, focused, theme, width, height, note, children }: FrameProps) {
  return (
    <Box
      flexDirection="column"
      width={width}
      height={height}
      borderStyle={focused ? "double" : "single"}
      borderColor={focused ? theme.focus : theme.muted}
      paddingX={1}
      overflow="hidden"
    >
      <Text bold={focused} color={focused ? theme.accent : undefined} wrap="truncate-end">
        {focused ? "▸ " : ""}
        {title}
        {note ? <Text color={theme.muted}> {note}</Text> : null}
      </Text>
      {children}
    </Box>
  );
}

/** Content lines a frame of `height` rows holds: minus two borders and the title line. */
export function innerLines(height: number): number {
  return Math.max(0, height - 3);
}

/** Content columns a frame of `width` holds: minus two borders and two padding cells. */
export function innerWidth(width: number): number {
  return Math.max(0, width - 4);
}

/** The window of `items` that fits `lines` rows, starting at `offset` (clamped so the end stays full). */
export function visible<T>(items: readonly T[], lines: number, offset: number): { rows: T[]; start: number } {
  const start = Math.max(0, Math.min(offset, items.length - lines));
  return { rows: items.slice(start, start + Math.max(0, lines)), start };
}

/** "3-8 of 20" when a list does not fit, nothing when it does. */
export function position(start: number, shown: number, total: number): string | undefined {
  if (total <= shown) return undefined;
  return `${start + 1}-${start + shown} of ${total}`;
}
