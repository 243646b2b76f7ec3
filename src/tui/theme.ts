/**
 * Colours, by role. With `NO_COLOR` (https://no-color.org) every role is undefined, so components
 * pass no colour props at all and Ink writes plain text; focus and state stay readable from the
 * words and borders alone.
 */
export interface Theme {
  mono: boolean;
  accent: string | undefined;
  ok: string | undefined;
  warn: string | undefined;
  bad: string | undefined;
  muted: string | undefined;
  /** Border of the focused panel; unfocused borders use `muted`. */
  focus: string | undefined;
}

export const COLOR_THEME: Theme = {
  mono: false,
  accent: "cyan",
  ok: "green",
  warn: "yellow",
  bad: "red",
  muted: "gray",
  focus: "cyan",
};

export const MONO_THEME: Theme = {
  mono: true,
  accent: undefined,
  ok: undefined,
  warn: undefined,
  bad: undefined,
  muted: undefined,
  focus: undefined,
};

export function themeFor(mono: boolean): Theme {
  return mono ? MONO_THEME : COLOR_THEME;
}

/** Colour for a usage fraction: fine, busy, nearly full. */
export function loadColor(theme: Theme, f: number | undefined): string | undefined {
  if (f === undefined) return theme.muted;
  if (f >= 0.9) return theme.bad;
  if (f >= 0.7) return theme.warn;
  return theme.ok;
}
