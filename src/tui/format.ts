/**
 * Text helpers the panels share: bars, sizes, durations. Pure and React-free, so the panels stay
 * small functions of their props.
 */

/** Characters of a full and an empty bar cell; plain block glyphs every terminal font has. */
const BAR_FULL = "█";
const BAR_EMPTY = "░";

/** A bar `width` cells wide, filled to `fraction` (clamped to 0..1); unknown draws empty with "?". */
export function bar(fraction: number | undefined, width: number): string {
  if (width <= 0) return "";
  if (fraction === undefined || !Number.isFinite(fraction)) return BAR_EMPTY.repeat(width);
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return BAR_FULL.repeat(filled) + BAR_EMPTY.repeat(width - filled);
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"] as const;

/** 85899345920 -> "80.0 GiB"; undefined -> "?". */
export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n) || n < 0) return "?";
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${UNITS[unit]}`;
}

/** Milliseconds as the two largest units: "45s", "12m 3s", "5h 2m", "3d 4h". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

/** Peer ids are 52 characters; the tail is what users compare ("…Xy12ab"), as libp2p tools print it. */
export function shortId(peerId: string, keep = 8): string {
  return peerId.length <= keep + 1 ? peerId : `…${peerId.slice(-keep)}`;
}

/** Percent of `part` in `whole`, or undefined when either is unknown. */
export function fraction(part: number | undefined, whole: number | undefined): number | undefined {
  if (part === undefined || whole === undefined || whole <= 0) return undefined;
  return part / whole;
}

/** `text` cut to `width` cells with an ellipsis, or padded with spaces to it. */
export function fit(text: string, width: number): string {
  if (width <= 0) return "";
  if (text.length > width) return width === 1 ? "…" : `${text.slice(0, width - 1)}…`;
  return text.padEnd(width);
}

/** "42" / "?" for optional figures. */
export function maybe(n: number | undefined, suffix = ""): string {
  return n === undefined ? "?" : `${Math.round(n)}${suffix}`;
}
