import { describe, expect, test } from "bun:test";
import type { Key } from "ink";
import { actionFor, BINDINGS, cyclePanel, filterActionFor, PANELS } from "./keymap.ts";
import { INITIAL_UI, MAX_FILTER_LENGTH, PAGE_LINES, reduceFilter, reduceUi } from "./ui.ts";

const NO_KEY: Key = {
  upArrow: false,
  downArrow: false,
  leftArrow: false,
  rightArrow: false,
  pageDown: false,
  pageUp: false,
  home: false,
  end: false,
  return: false,
  escape: false,
  ctrl: false,
  shift: false,
  tab: false,
  backspace: false,
  delete: false,
  meta: false,
  super: false,
  hyper: false,
  capsLock: false,
  numLock: false,
};
const key = (k: Partial<Key>): Key => ({ ...NO_KEY, ...k });

describe("keymap", () => {
  test("every action has one binding, and the keys map to them", () => {
    expect(new Set(BINDINGS.map((b) => b.action)).size).toBe(BINDINGS.length);
    expect(actionFor("?", NO_KEY)).toBe("help");
    expect(actionFor("", key({ tab: true }))).toBe("next-panel");
    expect(actionFor("", key({ tab: true, shift: true }))).toBe("prev-panel");
    expect(actionFor("", key({ leftArrow: true }))).toBe("prev-panel");
    expect(actionFor("p", NO_KEY)).toBe("toggle-serving");
    expect(actionFor("/", NO_KEY)).toBe("filter");
    expect(actionFor("f", NO_KEY)).toBe("filter");
    expect(actionFor("q", NO_KEY)).toBe("quit");
    expect(actionFor("x", NO_KEY)).toBeUndefined();
  });

  test("focus wraps round the panels", () => {
    expect(cyclePanel("log", 1)).toBe(PANELS[0]);
    expect(cyclePanel("hardware", -1)).toBe("log");
  });

  test("the filter prompt types printable text only", () => {
    expect(filterActionFor("mn", NO_KEY)).toEqual({ type: "mn" });
    expect(filterActionFor("a\u001b[31mb", NO_KEY)).toEqual({ type: "a[31mb" });
    expect(filterActionFor("c", key({ ctrl: true }))).toBeUndefined();
    expect(filterActionFor("", key({ return: true }))).toBe("filter-accept");
    expect(filterActionFor("", key({ escape: true }))).toBe("filter-cancel");
  });
});

describe("view state", () => {
  test("scrolling stops at the ends of the list", () => {
    const jobs = { ...INITIAL_UI, focus: "jobs" as const };
    expect(reduceUi(jobs, "scroll-up", 5).scroll.jobs).toBe(0);
    expect(reduceUi(jobs, "page-down", 5).scroll.jobs).toBe(4);
    expect(reduceUi(jobs, "page-down", 100).scroll.jobs).toBe(PAGE_LINES);
  });

  test("the log scrolls back from its newest line", () => {
    const log = { ...INITIAL_UI, focus: "log" as const };
    expect(reduceUi(log, "scroll-up", 50).scroll.log).toBe(1);
    expect(reduceUi(log, "scroll-down", 50).scroll.log).toBe(0);
  });

  test("the filter is capped, edited and cleared", () => {
    let ui = reduceUi(INITIAL_UI, "filter", 0);
    expect(ui).toMatchObject({ focus: "network", editingFilter: true });
    ui = reduceFilter(ui, { type: "x".repeat(MAX_FILTER_LENGTH + 10) });
    expect(ui.filter.length).toBe(MAX_FILTER_LENGTH);
    ui = reduceFilter(ui, "filter-backspace");
    expect(ui.filter.length).toBe(MAX_FILTER_LENGTH - 1);
    ui = reduceFilter(ui, "filter-cancel");
    expect(ui).toMatchObject({ filter: "", editingFilter: false });
  });
});
