import { Text } from "ink";
import type { DashboardSnapshot } from "../state.ts";
import type { Theme } from "../theme.ts";
import { Frame } from "./frame.tsx";

export interface EarningsProps {
  earnings: DashboardSnapshot["earnings"];
  theme: Theme;
  focused: boolean;
  width: number;
  height: number;
}

/** Payments are not built yet: the panel says so, with the node's reason, and shows no figures. */
export function EarningsPanel({ earnings, theme, focused, width, height }: EarningsProps) {
  return (
    <Frame title="Earnings" focused={focused} theme={theme} width={width} height={height}>
      <Text color={theme.warn}>not available yet: payments are not built</Text>
      <Text color={theme.muted}>{earnings.reason}</Text>
    </Frame>
  );
}
