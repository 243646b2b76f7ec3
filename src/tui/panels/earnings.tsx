import { Text } from "ink";
import { formatMsat, msat } from "../../payments/amount.ts";
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

/** The node's books as its ledger has them: what it was paid, and as an aggregator what it holds. */
export function EarningsPanel({ earnings, theme, focused, width, height }: EarningsProps) {
  const sat = (text: string) => formatMsat(msat(text));
  const aggregator = [earnings.feesMsat, earnings.escrowMsat, earnings.owedMsat].some((m) => m !== "0");
  return (
    <Frame title="Earnings" focused={focused} theme={theme} width={width} height={height}>
      <Text>
        income <Text color={theme.ok}>{sat(earnings.incomeMsat)}</Text>
        <Text color={theme.muted}> paid for this node's work</Text>
      </Text>
      {aggregator ? (
        <Text>
          fees {sat(earnings.feesMsat)} · escrowed {sat(earnings.escrowMsat)} · owed to providers{" "}
          {sat(earnings.owedMsat)}
        </Text>
      ) : null}
      <Text color={theme.muted}>
        channels: {earnings.paying} paying out, {earnings.paid} paying in · `infernet wallet` for the rest
      </Text>
    </Frame>
  );
}
