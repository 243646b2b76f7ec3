import type { Key } from "ink";

/**
 * Every key binding of the dashboard, in one place: the help overlay is drawn from this table and
 * the app dispatches through `actionFor`, so what `?` shows is exactly what the keys do.
 */

/** The panels focus moves between, in tab order (the header is not focusable). */
export const PANELS = ["hardware", "jobs", "network", "earnings", "log"] as const;
export type PanelId = (typeof PANELS)[number];

export const PANEL_TITLES: Record<PanelId, string> = {
  hardware: "Hardware",
  jobs: "Jobs",
  network: "Network",
  earnings: "Earnings",
  log: "Log",
};

export type Action =
  | "help"
  | "next-panel"
  | "prev-panel"
  | "scroll-up"
  | "scroll-down"
  | "page-up"
  | "page-down"
  | "toggle-serving"
  | "filter"
  | "models"
  | "details"
  | "close"
  | "quit";

/** Typing a model filter: keys edit the text instead of acting. */
export type FilterAction = "filter-accept" | "filter-cancel" | "filter-backspace";

export interface Binding {
  /** How the help overlay names the keys. */
  keys: string;
  description: string;
  /** What the key does instead when the dashboard owns the node (`infernet start` on a terminal). */
  ownerDescription?: string;
  action: Action;
  matches(input: string, key: Key): boolean;
}

export const BINDINGS: readonly Binding[] = [
  { keys: "?", description: "show or hide this help", action: "help", matches: (i) => i === "?" },
  {
    keys: "tab  →",
    description: "next panel",
    action: "next-panel",
    matches: (_, k) => (k.tab && !k.shift) || k.rightArrow,
  },
  {
    keys: "shift-tab  ←",
    description: "previous panel",
    action: "prev-panel",
    matches: (_, k) => (k.tab && k.shift) || k.leftArrow,
  },
  { keys: "↑  k", description: "scroll the panel up", action: "scroll-up", matches: (i, k) => k.upArrow || i === "k" },
  {
    keys: "↓  j",
    description: "scroll the panel down",
    action: "scroll-down",
    matches: (i, k) => k.downArrow || i === "j",
  },
  { keys: "pgup", description: "scroll a page up", action: "page-up", matches: (_, k) => k.pageUp },
  { keys: "pgdn", description: "scroll a page down", action: "page-down", matches: (_, k) => k.pageDown },
  {
    keys: "p",
    description: "pause or resume serving (this node stops taking new work)",
    action: "toggle-serving",
    matches: (i) => i === "p",
  },
  {
    keys: "/  f",
    description: "filter peers by model (enter keeps it, esc clears it)",
    action: "filter",
    matches: (i) => i === "/" || i === "f",
  },
  {
    keys: "m",
    description: "manage the models this node serves (add from the catalog, remove)",
    action: "models",
    matches: (i) => i === "m",
  },
  {
    keys: "enter",
    description: "details of the selected job or piece of work (Jobs panel)",
    action: "details",
    matches: (_, k) => k.return,
  },
  { keys: "esc", description: "close help, details or the model list", action: "close", matches: (_, k) => k.escape },
  {
    keys: "q",
    description: "quit the dashboard (the node keeps running); q again forces",
    ownerDescription: "stop the node: running work finishes first (new work is refused); q again stops at once",
    action: "quit",
    matches: (i) => i === "q",
  },
];

/** In the model list: keys move the cursor and add or remove the model under it. */
export type ModelsAction = "models-up" | "models-down" | "models-toggle" | "models-close";

export const MODEL_BINDINGS: readonly { keys: string; description: string; action: ModelsAction }[] = [
  { keys: "↑↓  j k", description: "move", action: "models-up" },
  {
    keys: "enter  space",
    description: "serve the model (downloading it first) or stop serving it",
    action: "models-toggle",
  },
  { keys: "esc  m  q", description: "close the list (a download goes on)", action: "models-close" },
];

export function modelsActionFor(input: string, key: Key): ModelsAction | undefined {
  if (key.upArrow || input === "k") return "models-up";
  if (key.downArrow || input === "j") return "models-down";
  if (key.return || input === " ") return "models-toggle";
  if (key.escape || input === "m" || input === "q") return "models-close";
  return undefined;
}

export function actionFor(input: string, key: Key): Action | undefined {
  return BINDINGS.find((b) => b.matches(input, key))?.action;
}

/** In the filter prompt: enter, esc and backspace act; any other printable text is typed. */
export function filterActionFor(input: string, key: Key): FilterAction | { type: string } | undefined {
  if (key.return) return "filter-accept";
  if (key.escape) return "filter-cancel";
  if (key.backspace || key.delete) return "filter-backspace";
  if (key.ctrl || key.meta || key.tab || !input) return undefined;
  // Printable characters only: a pasted control sequence must not reach the filter text.
  const text = [...input].filter((c) => c >= " " && c !== "\u007f").join("");
  return text ? { type: text } : undefined;
}

/** The panel after (or before, `step` -1) `current`, wrapping round. */
export function cyclePanel(current: PanelId, step: 1 | -1): PanelId {
  const i = PANELS.indexOf(current);
  return PANELS[(i + step + PANELS.length) % PANELS.length] ?? "hardware";
}

/**
 * The keys in one chunk of input. A terminal delivers keys typed quickly (or pasted, or sent by
 * tmux in one write) as one chunk, which Ink hands over whole: "jj\r" is three keys here. Escape
 * sequences (arrows, tab) arrive as their own chunk and pass through; in the filter prompt the
 * chunk is text and stays whole.
 */
export function keysIn(input: string, key: Key, typing: boolean): [string, Key][] {
  if (typing || input.length <= 1 || key.ctrl || key.meta || input.startsWith("\u001b")) return [[input, key]];
  return [...input].map((c): [string, Key] => [c === "\r" ? "" : c, { ...key, return: c === "\r" }]);
}
