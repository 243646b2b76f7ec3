import { Box, Text } from "ink";
import { BINDINGS } from "../keymap.ts";
import type { Theme } from "../theme.ts";

/** Width of the keys column of the help overlay. */
const KEYS_COLUMN = 14;

/** Every binding, from the keymap itself. */
export function HelpOverlay({ theme, width, owner = false }: { theme: Theme; width: number; owner?: boolean }) {
  return (
    <Box flexDirection="column" borderStyle="double" borderColor={theme.focus} paddingX={1} width={width}>
      <Text bold color={theme.accent}>
        Keys
      </Text>
      {BINDINGS.map((b) => (
        <Text key={b.action} wrap="truncate-end">
          <Text bold>{b.keys.padEnd(KEYS_COLUMN)}</Text>
          {owner ? (b.ownerDescription ?? b.description) : b.description}
        </Text>
      ))}
      <Text color={theme.muted}>
        {owner
          ? "This dashboard runs the node (infernet start): q stops both; `infernet start --no-dash` runs it without one."
          : "The dashboard only watches the node: quitting it leaves the node running."}
      </Text>
    </Box>
  );
}
