import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { renderToString } from "ink";
import { render } from "ink-testing-library";
import { Dashboard, WIDE_MIN_COLUMNS } from "./dashboard.tsx";
import { EMPTY_SNAPSHOT, longLog, PEER_IDS, PROVIDER_ID, PROVIDER_SNAPSHOT } from "./fixtures.ts";
import type { PanelId } from "./keymap.ts";
import { filterPeers, reputation } from "./panels/network.tsx";
import type { DashboardSnapshot } from "./state.ts";
import { themeFor } from "./theme.ts";
import { INITIAL_UI, type UiState } from "./ui.ts";

const NARROW = { columns: 80, rows: 24 };
const WIDE = { columns: 140, rows: 40 };

/** A narrow frame through ink-testing-library (its terminal is 100 columns, wide enough for 80). */
function narrow(snapshot: DashboardSnapshot | undefined, ui: Partial<UiState> = {}, mono = true): string {
  const r = render(
    <Dashboard snapshot={snapshot} ui={{ ...INITIAL_UI, ...ui }} theme={themeFor(mono)} {...NARROW} status={{}} />,
  );
  const frame = r.lastFrame() ?? "";
  r.unmount();
  return frame;
}

/** A wide frame: wider than ink-testing-library's fixed 100 columns, so drawn by Ink's renderToString. */
function wide(snapshot: DashboardSnapshot, ui: Partial<UiState> = {}): string {
  return renderToString(
    <Dashboard snapshot={snapshot} ui={{ ...INITIAL_UI, ...ui }} theme={themeFor(true)} {...WIDE} status={{}} />,
    { columns: WIDE.columns },
  );
}

function focused(panel: PanelId, snapshot = PROVIDER_SNAPSHOT, ui: Partial<UiState> = {}): string {
  return narrow(snapshot, { ...ui, focus: panel });
}

describe("narrow (80x24): one panel at a time", () => {
  test("fits 80 columns and 24 rows", () => {
    for (const panel of ["hardware", "jobs", "network", "earnings", "log"] as const) {
      const lines = focused(panel).split("\n");
      expect(lines.length).toBe(NARROW.rows);
      for (const line of lines) expect(line.length).toBeLessThanOrEqual(NARROW.columns);
    }
  });

  test("header: short id, modes, version, uptime, reachability, connections, addresses", () => {
    const frame = focused("hardware");
    expect(frame).toContain("infernet 0.1.0");
    expect(frame).toContain("…UUknrmdm");
    expect(frame).not.toContain(PROVIDER_ID);
    expect(frame).toContain("provider+aggregator");
    expect(frame).toContain("up 1h 2m");
    expect(frame).toContain("serving");
    expect(frame).toContain("reachable (public)");
    expect(frame).toContain("3 connections");
    expect(frame).toContain("listening /ip4/10.0.0.6/udp/7707/quic-v1 (+2");
  });

  test("hardware: the H100 with its VRAM, utilisation and temperature; CPU, RAM, engine", () => {
    const frame = focused("hardware");
    expect(frame).toContain("▸ Hardware");
    expect(frame).toContain("GPU0 NVIDIA H100 80GB HBM3");
    expect(frame).toMatch(/VRAM ░+ 0 B \/ 79\.6 GiB {2}util 0% {2}33°C/);
    expect(frame).toMatch(/CPU {2}█+░+ 12% {2}AMD EPYC \(16 cores\)/);
    expect(frame).toContain("9.5 GiB / 128.0 GiB");
    expect(frame).toContain("engine llama.cpp cuda + onnxruntime cpu");
  });

  test("jobs: what is served, then each held job with its progress, state, retries and age", () => {
    const frame = focused("jobs");
    expect(frame).toContain("serving stories260k, mnist-8");
    expect(frame).toContain("1 running  2 queued  314 served  1 failed  412.5/s");
    expect(frame).toMatch(/job 9f1c2ab4 mnist-8 +█{6}░{4} +10\/16 running +retries 2 age 2m 5s/);
    expect(frame).toMatch(/job 3b7e90c1 mnist-8 +█{10} +8\/8 verified retries 0 took 3s/);
    // Newest first.
    expect(frame.indexOf("9f1c2ab4")).toBeLessThan(frame.indexOf("3b7e90c1"));
    // Then the work computed here: the running shard with its rate and ETA, then the finished ones.
    expect(frame).toMatch(/shard +mnist-8 +…QhmYwewJ █{3}░{7} +300\/1000 rec running 150\/s ETA 4s/);
    expect(frame).toMatch(/request stories260k …FZbmtewi █{10} +200\/200 tok done took 0s/);
    expect(frame).toMatch(/shard +mnist-8 +…QhmYwewJ ░{10} +0\/1000 rec failed took 5s +the/);
  });

  test("network: peers with models, price, latency and reputation; connected first", () => {
    const frame = focused("network");
    expect(frame).toMatch(/…FZbmtewi +20 sat +3 ms +96% of 50 +stories260k, mnist-8/);
    expect(frame).toMatch(/…QhmYwewJ +15 sat +41 ms +100% of 12 +mnist-8/);
    expect(frame).toMatch(/…7Fs3cr5d +120 sat +87 ms +- +llama3\.2-1b/);
    expect(frame).toMatch(/…LDskUpb6 +25 sat +\? +38% of 8 +stories260k \(offline\)/);
  });

  test("network filter by model", () => {
    const frame = focused("network", PROVIDER_SNAPSHOT, { filter: "mnist" });
    expect(frame).toContain("model: mnist");
    expect(frame).toContain("…FZbmtewi");
    expect(frame).toContain("…QhmYwewJ");
    expect(frame).not.toContain("…7Fs3cr5d");
    expect(frame).not.toContain("…LDskUpb6");
    expect(focused("network", PROVIDER_SNAPSHOT, { filter: "llama3.2-3b" })).toContain(
      'no known peer serves a model matching "llama3.2-3b"',
    );
    expect(filterPeers(PROVIDER_SNAPSHOT.peers, "QWEN").map((p) => p.peerId)).toEqual([PEER_IDS[2]]);
  });

  test("earnings: the node's income from its books, exact to the msat, and its channels", () => {
    const frame = focused("earnings");
    expect(frame).toContain("income 1,234.5 sat");
    expect(frame).toContain("channels: 0 paying out, 1 paying in");
    // A provider holds no escrow: the aggregator line is not shown.
    expect(frame).not.toContain("owed to providers");
  });

  test("log: the newest lines, scrolled back with a note", () => {
    const log = longLog(60);
    const tail = focused("log", { ...PROVIDER_SNAPSHOT, log });
    expect(tail).toContain("line 60");
    expect(tail).not.toContain("line 30 ");
    const back = focused("log", { ...PROVIDER_SNAPSHOT, log }, { scroll: { ...INITIAL_UI.scroll, log: 5 } });
    expect(back).toContain("5 lines back");
    expect(back).toContain("line 55");
    expect(back).not.toContain("line 56");
  });

  test("empty states", () => {
    expect(focused("hardware", EMPTY_SNAPSHOT)).toContain("no GPU found");
    expect(focused("hardware", EMPTY_SNAPSHOT)).toContain("engine none (nothing served)");
    expect(focused("jobs", EMPTY_SNAPSHOT)).toContain("no work yet: requests, shards and batch jobs show here");
    expect(focused("jobs", EMPTY_SNAPSHOT)).toContain("serving no models");
    expect(focused("network", EMPTY_SNAPSHOT)).toContain("no peers known yet");
    expect(focused("log", EMPTY_SNAPSHOT)).toContain("nothing logged yet");
    const header = focused("hardware", EMPTY_SNAPSHOT);
    expect(header).toContain("reachability unknown  0 connections  not listening");
  });

  test("before the first snapshot: connecting", () => {
    expect(narrow(undefined)).toContain("connecting to the node");
  });

  test("paused serving shows in the header and the jobs panel", () => {
    const paused = { ...PROVIDER_SNAPSHOT, serving: { ...PROVIDER_SNAPSHOT.serving, accepting: false } };
    const frame = focused("jobs", paused);
    expect(frame).toContain("PAUSED");
    expect(frame).toContain("paused: taking no new work");
  });

  test("help overlay lists every key", () => {
    const frame = narrow(PROVIDER_SNAPSHOT, { help: true });
    for (const words of ["show or hide this help", "next panel", "pause or resume serving", "filter peers by model"]) {
      expect(frame).toContain(words);
    }
    expect(frame).toMatch(/q +quit the dashboard/);
  });
});

describe("wide: every panel at once", () => {
  test("all panels, the full peer id and every address", () => {
    const frame = wide(PROVIDER_SNAPSHOT);
    expect(WIDE.columns).toBeGreaterThanOrEqual(WIDE_MIN_COLUMNS);
    for (const title of ["Hardware", "Jobs", "Network", "Earnings", "Log"]) expect(frame).toContain(title);
    expect(frame).toContain(PROVIDER_ID);
    expect(frame).toContain("/ip4/127.0.0.1/udp/7707/quic-v1");
    expect(frame).toContain("NVIDIA H100 80GB HBM3");
    expect(frame).toContain("…FZbmtewi");
    expect(frame).toContain("job verified");
    const lines = frame.split("\n");
    expect(lines.length).toBe(WIDE.rows);
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(WIDE.columns);
  });

  test("the focused panel is marked without colour", () => {
    expect(wide(PROVIDER_SNAPSHOT, { focus: "network" })).toContain("▸ Network");
    expect(wide(PROVIDER_SNAPSHOT, { focus: "network" })).not.toContain("▸ Hardware");
  });

  test("empty network", () => {
    const frame = wide(EMPTY_SNAPSHOT);
    expect(frame).toContain("no peers known yet");
    expect(frame).toContain("no work yet: requests, shards and batch jobs show here");
  });
});

/** The escape character that starts an SGR sequence. */
const ESC = String.fromCharCode(27);

describe("NO_COLOR", () => {
  /** SGR foreground and background colour codes (30-37, 39-47, 49, 90-97, 100-107). */
  const COLOUR = new RegExp(`${ESC}\\[(3\\d|4\\d|9[0-7]|10[0-7])m`);

  /**
   * Ink colours through its own chalk, which turns itself off when output is not a terminal (as in
   * this test process); a child with FORCE_COLOR draws the frames, so a colour prop would show.
   */
  function colouredFrames(mono: boolean): string[] {
    const code = `
      import { renderToString } from "ink";
      import { createElement } from "react";
      import { Dashboard } from ${JSON.stringify(join(import.meta.dir, "dashboard.tsx"))};
      import { PROVIDER_SNAPSHOT } from ${JSON.stringify(join(import.meta.dir, "fixtures.ts"))};
      import { themeFor } from ${JSON.stringify(join(import.meta.dir, "theme.ts"))};
      import { INITIAL_UI } from ${JSON.stringify(join(import.meta.dir, "ui.ts"))};
      const frames = [..."hardware jobs network log".split(" ").map((focus) => ({ focus })), { help: true }].map((ui) =>
        renderToString(createElement(Dashboard, { snapshot: PROVIDER_SNAPSHOT, ui: { ...INITIAL_UI, ...ui },
          theme: themeFor(${mono}), columns: 80, rows: 24, status: {} }), { columns: 80 }));
      process.stdout.write(JSON.stringify(frames));`;
    const child = Bun.spawnSync([process.execPath, "-e", code], {
      cwd: join(import.meta.dir, "../.."),
      env: { ...process.env, FORCE_COLOR: "1", NO_COLOR: "" },
    });
    if (child.exitCode !== 0) throw new Error(child.stderr.toString());
    return JSON.parse(child.stdout.toString()) as string[];
  }

  test("monochrome frames carry no colour codes; coloured ones do", () => {
    for (const frame of colouredFrames(true)) expect(frame).not.toMatch(COLOUR);
    for (const frame of colouredFrames(false)) expect(frame).toMatch(COLOUR);
  });
});

test("reputation is the share completed and out of how many", () => {
  expect(PROVIDER_SNAPSHOT.peers.map(reputation)).toEqual(["96% of 50", "100% of 12", "-", "38% of 8"]);
});
