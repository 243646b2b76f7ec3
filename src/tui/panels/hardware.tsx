import { Text } from "ink";
import { Fragment } from "react";
import { bar, bytes, fraction, maybe } from "../format.ts";
import type { HardwareView } from "../state.ts";
import { loadColor, type Theme } from "../theme.ts";
import { Frame, innerWidth } from "./frame.tsx";

export interface HardwareProps {
  hardware: HardwareView;
  theme: Theme;
  focused: boolean;
  width: number;
  height: number;
}

/** Widest a bar gets, so a wide terminal does not draw a 100-cell VRAM bar. */
const MAX_BAR = 24;
/** Cells the text beside a bar takes ("VRAM " + " 79.6/79.6 GiB  util 100%  100°C"). */
const BAR_LABELS = 40;

/** Content lines the panel needs: two per GPU, then CPU, RAM and engine. */
export function hardwareLines(hardware: HardwareView): number {
  return Math.max(1, hardware.gpus.length) * 2 + 3;
}

/** Per GPU a VRAM bar with utilisation and temperature; CPU and RAM bars; the engine in use. */
export function HardwarePanel({ hardware, theme, focused, width, height }: HardwareProps) {
  const w = Math.max(4, Math.min(MAX_BAR, innerWidth(width) - BAR_LABELS));
  const { cpu, memory } = hardware;
  const cpuF = cpu.usedPercent === undefined ? undefined : cpu.usedPercent / 100;
  const memF = fraction(memory.usedBytes, memory.totalBytes);
  return (
    <Frame title="Hardware" focused={focused} theme={theme} width={width} height={height}>
      {hardware.gpus.length === 0 ? (
        <>
          <Text color={theme.muted}>no GPU found (nvidia-smi did not answer)</Text>
          <Text> </Text>
        </>
      ) : (
        hardware.gpus.map((gpu, i) => {
          const vram = fraction(gpu.vramUsedBytes, gpu.vramTotalBytes);
          return (
            // biome-ignore lint/suspicious/noArrayIndexKey: GPUs are listed by their index, which is their identity
            <Fragment key={i}>
              <Text wrap="truncate-end">
                GPU{i} {gpu.name}
              </Text>
              <Text wrap="truncate-end">
                {"VRAM "}
                <Text color={loadColor(theme, vram)}>{bar(vram, w)}</Text>
                {` ${bytes(gpu.vramUsedBytes)} / ${bytes(gpu.vramTotalBytes)}  util ${maybe(gpu.utilizationPercent, "%")}  ${maybe(gpu.temperatureC, "°C")}`}
              </Text>
            </Fragment>
          );
        })
      )}
      <Text wrap="truncate-end">
        {"CPU  "}
        <Text color={loadColor(theme, cpuF)}>{bar(cpuF, w)}</Text>
        {` ${maybe(cpu.usedPercent, "%")}  ${cpu.model} (${cpu.cores} cores)`}
      </Text>
      <Text wrap="truncate-end">
        {"RAM  "}
        <Text color={loadColor(theme, memF)}>{bar(memF, w)}</Text>
        {` ${bytes(memory.usedBytes)} / ${bytes(memory.totalBytes)}`}
      </Text>
      <Text wrap="truncate-end">
        engine{" "}
        <Text bold color={hardware.engine ? theme.accent : theme.muted}>
          {hardware.engine ?? "none (nothing served)"}
        </Text>
      </Text>
    </Frame>
  );
}
