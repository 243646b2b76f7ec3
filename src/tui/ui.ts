import { type Action, cyclePanel, type FilterAction, type ModelsAction, type PanelId } from "./keymap.ts";

/** What the user has done to the view; the snapshot is separate (it comes from the node). */
export interface UiState {
  focus: PanelId;
  help: boolean;
  /** Model filter of the Network panel; empty = all peers. */
  filter: string;
  /** The filter prompt is open: keys type into it. */
  editingFilter: boolean;
  /** The model list (`m`) is open: keys move its cursor and serve or unserve. */
  models: boolean;
  /** The model list's cursor. */
  modelCursor: number;
  /** The selected row of the Jobs panel is shown in full. */
  details: boolean;
  /** Jobs: the selected row. Network: first row shown. Log: lines back from the newest. Others: unused. */
  scroll: Record<PanelId, number>;
}

export const INITIAL_UI: UiState = {
  focus: "hardware",
  help: false,
  filter: "",
  editingFilter: false,
  models: false,
  modelCursor: 0,
  details: false,
  scroll: { hardware: 0, jobs: 0, network: 0, earnings: 0, log: 0 },
};

/** Rows one page-up/down moves. */
export const PAGE_LINES = 10;
/** Longest model filter the prompt takes (model names are short). */
export const MAX_FILTER_LENGTH = 64;

/**
 * The view after `action`. `items` is how many rows the focused panel has, so scrolling stops at
 * the end of the list instead of counting presses past it. `toggle-serving` and `quit` are the
 * app's to carry out; here they change nothing.
 */
export function reduceUi(state: UiState, action: Action, items: number): UiState {
  const scrollBy = (delta: number): UiState => {
    // The log counts back from its newest line, so "up" moves further back.
    const d = state.focus === "log" ? -delta : delta;
    const next = Math.max(0, Math.min(Math.max(0, items - 1), state.scroll[state.focus] + d));
    return { ...state, scroll: { ...state.scroll, [state.focus]: next } };
  };
  switch (action) {
    case "help":
      return { ...state, help: !state.help, details: false };
    case "close":
      return { ...state, help: false, details: false, models: false };
    case "next-panel":
      return { ...state, help: false, details: false, focus: cyclePanel(state.focus, 1) };
    case "prev-panel":
      return { ...state, help: false, details: false, focus: cyclePanel(state.focus, -1) };
    case "models":
      return { ...state, help: false, details: false, models: true };
    case "details":
      // Only the Jobs panel has rows with more to show.
      return state.focus === "jobs" && items > 0 ? { ...state, help: false, details: !state.details } : state;
    case "scroll-up":
      return scrollBy(-1);
    case "scroll-down":
      return scrollBy(1);
    case "page-up":
      return scrollBy(-PAGE_LINES);
    case "page-down":
      return scrollBy(PAGE_LINES);
    case "filter":
      return { ...state, help: false, details: false, focus: "network", editingFilter: true };
    case "toggle-serving":
    case "quit":
      return state;
  }
}

/** The view after a key in the filter prompt. */
export function reduceFilter(state: UiState, action: FilterAction | { type: string }): UiState {
  if (typeof action === "object") {
    const filter = (state.filter + action.type).slice(0, MAX_FILTER_LENGTH);
    return { ...state, filter, scroll: { ...state.scroll, network: 0 } };
  }
  switch (action) {
    case "filter-accept":
      return { ...state, editingFilter: false };
    case "filter-cancel":
      return { ...state, editingFilter: false, filter: "", scroll: { ...state.scroll, network: 0 } };
    case "filter-backspace":
      return { ...state, filter: state.filter.slice(0, -1) };
  }
}

/** The model list after a key; `count` is how many models it lists. */
export function reduceModels(state: UiState, action: ModelsAction, count: number): UiState {
  switch (action) {
    case "models-up":
      return { ...state, modelCursor: Math.max(0, state.modelCursor - 1) };
    case "models-down":
      return { ...state, modelCursor: Math.max(0, Math.min(count - 1, state.modelCursor + 1)) };
    case "models-close":
      return { ...state, models: false };
    case "models-toggle":
      return state;
  }
}
