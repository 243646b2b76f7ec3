import { Box, Text } from "ink";
import { bar, bytes, fit } from "../format.ts";
import { MODEL_BINDINGS } from "../keymap.ts";
import type { ModelChoice, ServeProgress } from "../state.ts";
import type { Theme } from "../theme.ts";

/** A model being added: its name and the latest progress the node sent (none before the first). */
export interface Adding {
  name: string;
  progress: ServeProgress | undefined;
}

export interface ModelsProps {
  /** The catalog as the node sees it; undefined while the list is on its way. */
  choices: ModelChoice[] | undefined;
  cursor: number;
  adding: Adding | undefined;
  /** Why the list or the last change failed. */
  notice: string | undefined;
  theme: Theme;
  width: number;
  /** Rows the list may take (the overlay scrolls to keep the cursor in view). */
  rows: number;
}

/** Cells of the pull progress bar. */
const PULL_BAR = 24;
/** Lines around the list: border, title, progress, notice, keys. */
const CHROME_LINES = 6;

const PHASE_WORDS: Record<ServeProgress["phase"], string> = {
  wait: "waiting for another download of",
  download: "downloading",
  verify: "verifying",
  load: "loading",
};

/** One line of pull progress: "downloading llama3.2-1b ████░░ 34%  260.0 MiB of 770.3 MiB  12.3 MiB/s". */
export function progressLine(adding: Adding): string {
  const p = adding.progress;
  if (!p) return `adding ${adding.name}…`;
  if (p.phase === "load") return `loading ${adding.name} into its engine…`;
  const f = p.totalBytes > 0 ? p.doneBytes / p.totalBytes : undefined;
  const percent = f === undefined ? "" : ` ${Math.floor(f * 100)}%`;
  const rate = p.bytesPerSecond > 0 ? `  ${bytes(p.bytesPerSecond)}/s` : "";
  return `${PHASE_WORDS[p.phase]} ${p.file ?? adding.name} ${bar(f, PULL_BAR)}${percent}  ${bytes(p.doneBytes)} of ${bytes(p.totalBytes)}${rate}`;
}

/** The model manager (`m`): the catalog with what is served, and the pull in progress. */
export function ModelsOverlay({ choices, cursor, adding, notice, theme, width, rows }: ModelsProps) {
  const lines = Math.max(1, rows - CHROME_LINES);
  const first = Math.max(0, Math.min(cursor - lines + 1, (choices?.length ?? 0) - lines));
  const shown = choices?.slice(first, first + lines) ?? [];
  return (
    <Box flexDirection="column" borderStyle="double" borderColor={theme.focus} paddingX={1} width={width}>
      <Text bold color={theme.accent}>
        Models served by this node
      </Text>
      {choices === undefined ? (
        <Text color={theme.muted}>asking the node for the catalog…</Text>
      ) : choices.length === 0 ? (
        <Text color={theme.muted}>the catalog is empty</Text>
      ) : (
        shown.map((m, i) => {
          const selected = first + i === cursor;
          const state =
            adding?.name === m.name ? "adding" : m.served ? "served" : m.cached ? "downloaded" : "not downloaded";
          return (
            <Text key={m.name} wrap="truncate-end" inverse={selected}>
              {selected ? "› " : "  "}
              {m.served ? "[x] " : "[ ] "}
              <Text bold>{fit(m.name, 14)}</Text>
              {` ${fit(m.runtime, 5)} ${bytes(m.sizeBytes).padStart(10)}  `}
              <Text color={m.served ? theme.ok : adding?.name === m.name ? theme.accent : theme.muted}>
                {fit(state, 14)}
              </Text>
              <Text color={theme.muted}>{` ${m.description}`}</Text>
            </Text>
          );
        })
      )}
      <Text wrap="truncate-end" color={theme.accent}>
        {adding ? progressLine(adding) : " "}
      </Text>
      <Text wrap="truncate-end" color={theme.warn}>
        {notice ?? " "}
      </Text>
      <Text wrap="truncate-end" color={theme.muted}>
        {MODEL_BINDINGS.map((b) => `${b.keys} ${b.description}`).join("   ")}
      </Text>
    </Box>
  );
}
