import { describe, expect, test } from "bun:test";
import { render } from "ink-testing-library";
import { useEffect } from "react";
import { App, type DashboardSource } from "./app.tsx";
import { longLog, PEER_IDS, PROVIDER_SNAPSHOT } from "./fixtures.ts";
import type { DashboardSnapshot, ModelChoice, ServeProgress } from "./state.ts";

/** Escape sequences a terminal sends for these keys. */
const KEY = { tab: "\t", shiftTab: "\u001b[Z", up: "\u001b[A", enter: "\r", escape: "\u001b" } as const;

/**
 * A node as the dashboard sees it: snapshots from a fixture, serving toggled as the control API
 * would; `hold` keeps the next setServing answer back until `release`.
 */
class FakeNode implements DashboardSource {
  accepting = true;
  servingCalls: boolean[] = [];
  snapshots = 0;
  log = PROVIDER_SNAPSHOT.log;
  /** Requests and shards running on the node (what a drain waits for). */
  active = PROVIDER_SNAPSHOT.serving.active;
  queued = PROVIDER_SNAPSHOT.serving.queued;
  choices: ModelChoice[] = [
    {
      name: "stories260k",
      description: "tiny stories",
      runtime: "llama",
      sizeBytes: 1_185_376,
      cached: true,
      served: true,
    },
    {
      name: "mnist-8",
      description: "handwritten digits",
      runtime: "onnx",
      sizeBytes: 26_454,
      cached: true,
      served: false,
    },
  ];
  modelCalls: string[] = [];
  /** Progress the next serveModel reports, then it waits for `finishPull`. */
  pull: ServeProgress[] = [];
  private pulled: (() => void) | undefined;
  private held: (() => void) | undefined;
  hold = false;

  async snapshot(): Promise<DashboardSnapshot> {
    this.snapshots += 1;
    return {
      ...PROVIDER_SNAPSHOT,
      log: this.log,
      serving: { ...PROVIDER_SNAPSHOT.serving, accepting: this.accepting, active: this.active, queued: this.queued },
    };
  }

  async models(): Promise<ModelChoice[]> {
    return this.choices.map((c) => ({ ...c }));
  }

  async serveModel(name: string, onProgress: (p: ServeProgress) => void): Promise<void> {
    this.modelCalls.push(`serve ${name}`);
    for (const p of this.pull) onProgress(p);
    await new Promise<void>((resolve) => (this.pulled = resolve));
    this.choices = this.choices.map((c) => (c.name === name ? { ...c, served: true, cached: true } : c));
  }

  finishPull(): void {
    this.pulled?.();
  }

  async unserveModel(name: string): Promise<void> {
    this.modelCalls.push(`unserve ${name}`);
    this.choices = this.choices.map((c) => (c.name === name ? { ...c, served: false } : c));
  }

  async setServing(on: boolean): Promise<void> {
    this.servingCalls.push(on);
    if (this.hold) await new Promise<void>((resolve) => (this.held = resolve));
    this.accepting = on;
  }

  release(): void {
    this.held?.();
  }
}

/** Calls `onUnmount` when Ink tears the tree down (the app exited). */
function UnmountProbe({ onUnmount }: { onUnmount: () => void }) {
  useEffect(() => onUnmount, [onUnmount]);
  return null;
}

function start(node: FakeNode, options: { owner?: boolean; pollMs?: number } = {}) {
  const state = { unmounted: false };
  const r = render(
    <>
      <App
        source={node}
        mono
        owner={options.owner ?? false}
        size={{ columns: 80, rows: 24 }}
        pollMs={options.pollMs ?? 60_000}
      />
      <UnmountProbe onUnmount={() => (state.unmounted = true)} />
    </>,
  );
  return { ...r, state, frame: () => r.lastFrame() ?? "" };
}

/** Waits until `check` holds; Ink renders asynchronously. Bounded by the test's timeout, not a clock. */
async function until(check: () => boolean): Promise<void> {
  while (!check()) await Bun.sleep(5);
}

describe("App", () => {
  test("shows the node's snapshot once it arrives", async () => {
    const node = new FakeNode();
    const app = start(node);
    await until(() => app.frame().includes("NVIDIA H100"));
    expect(app.frame()).toContain("▸ Hardware");
    app.unmount();
  });

  test("tab and shift-tab move focus between panels", async () => {
    const app = start(new FakeNode());
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write(KEY.tab);
    await until(() => app.frame().includes("▸ Jobs"));
    app.stdin.write(KEY.tab);
    await until(() => app.frame().includes("▸ Network"));
    app.stdin.write(KEY.shiftTab);
    app.stdin.write(KEY.shiftTab);
    app.stdin.write(KEY.shiftTab);
    await until(() => app.frame().includes("▸ Log"));
    app.unmount();
  });

  test("? opens the help overlay and closes it again", async () => {
    const app = start(new FakeNode());
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write("?");
    await until(() => app.frame().includes("pause or resume serving"));
    app.stdin.write("?");
    await until(() => !app.frame().includes("pause or resume serving"));
    app.unmount();
  });

  test("p pauses serving through the client, p again resumes", async () => {
    const node = new FakeNode();
    const app = start(node);
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write("p");
    await until(() => app.frame().includes("PAUSED"));
    expect(node.servingCalls).toEqual([false]);
    app.stdin.write("p");
    await until(() => !app.frame().includes("PAUSED"));
    expect(node.servingCalls).toEqual([false, true]);
    app.unmount();
  });

  test("/ filters peers by model; esc clears the filter", async () => {
    const app = start(new FakeNode());
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write("/");
    await until(() => app.frame().includes("▸ Network"));
    app.stdin.write("llama");
    app.stdin.write(KEY.enter);
    await until(() => app.frame().includes("model: llama") && !app.frame().includes("▏"));
    expect(app.frame()).toContain("…7Fs3cr5d");
    expect(app.frame()).not.toContain("…FZbmtewi");
    // The filter prompt is closed: "q" is a key again, not text. Reopen and clear with esc.
    app.stdin.write("f");
    await until(() => app.frame().includes("▏"));
    app.stdin.write(KEY.escape);
    await until(() => app.frame().includes("…FZbmtewi"));
    expect(app.frame()).not.toContain("model:");
    app.unmount();
  });

  test("arrows scroll the log back", async () => {
    const node = new FakeNode();
    node.log = longLog(60);
    const app = start(node);
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write(KEY.shiftTab);
    await until(() => app.frame().includes("line 60"));
    app.stdin.write(KEY.up);
    app.stdin.write("k");
    await until(() => app.frame().includes("2 lines back"));
    expect(app.frame()).not.toContain("line 60");
    app.unmount();
  });

  test("q exits and unmounts", async () => {
    const app = start(new FakeNode());
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write("q");
    await until(() => app.state.unmounted);
  });

  test("q waits for a pause in flight; a second q forces", async () => {
    const node = new FakeNode();
    node.hold = true;
    const app = start(node);
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write("p");
    await until(() => node.servingCalls.length === 1);
    app.stdin.write("q");
    await until(() => app.frame().includes("quitting… (q again to force)"));
    expect(app.state.unmounted).toBe(false);
    app.stdin.write("q");
    await until(() => app.state.unmounted);
    node.release();
  });

  test("q lets a pause in flight finish, then exits", async () => {
    const node = new FakeNode();
    node.hold = true;
    const app = start(node);
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write("p");
    await until(() => node.servingCalls.length === 1);
    app.stdin.write("q");
    await until(() => app.frame().includes("quitting…"));
    node.release();
    await until(() => app.state.unmounted);
    expect(node.accepting).toBe(false);
  });

  test("a node that stops answering is reported, and the last snapshot stays", async () => {
    const node = new FakeNode();
    const app = render(<App source={node} mono size={{ columns: 80, rows: 24 }} pollMs={1} />);
    await until(() => (app.lastFrame() ?? "").includes("NVIDIA H100"));
    node.snapshot = async () => {
      throw new Error("connect ENOENT /tmp/infernet/control.sock");
    };
    await until(() => (app.lastFrame() ?? "").includes("node not answering: connect ENOENT"));
    expect(app.lastFrame()).toContain("NVIDIA H100");
    app.unmount();
  });

  test("enter on the Jobs panel shows the selected row in full; esc closes it", async () => {
    const app = start(new FakeNode());
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write(KEY.tab);
    await until(() => app.frame().includes("▸ Jobs"));
    // Rows: the running job, the verified job, then the work: select the running shard (third row).
    app.stdin.write("j");
    app.stdin.write("j");
    app.stdin.write(KEY.enter);
    await until(() => app.frame().includes("shard computed here"));
    expect(app.frame()).toContain("300 of 1000 records");
    expect(app.frame()).toContain(`${PEER_IDS[1]} (aggregator)`);
    app.stdin.write(KEY.escape);
    await until(() => app.frame().includes("▸ Jobs"));
    app.unmount();
  });

  test("m lists the catalog; enter serves a model with a progress bar, and stops serving one", async () => {
    const node = new FakeNode();
    node.pull = [{ phase: "download", file: "mnist-8.onnx", doneBytes: 13_227, totalBytes: 26_454, bytesPerSecond: 0 }];
    const app = start(node);
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write("m");
    await until(() => app.frame().includes("Models served by this node") && app.frame().includes("mnist-8"));
    expect(app.frame()).toMatch(/› \[x\] stories260k/);
    app.stdin.write("j");
    app.stdin.write(KEY.enter);
    await until(() => app.frame().includes("downloading mnist-8.onnx"));
    expect(app.frame()).toContain("50%");
    expect(node.modelCalls).toEqual(["serve mnist-8"]);
    node.finishPull();
    await until(() => app.frame().includes("mnist-8 is served") && /\[x\] mnist-8/.test(app.frame()));
    app.stdin.write("k");
    app.stdin.write(" ");
    await until(() => app.frame().includes("stories260k is no longer served"));
    expect(node.modelCalls).toEqual(["serve mnist-8", "unserve stories260k"]);
    app.stdin.write(KEY.escape);
    await until(() => !app.frame().includes("Models served by this node"));
    app.unmount();
  });

  test("owning the node, q pauses serving and waits for running work; it exits once none is left", async () => {
    const node = new FakeNode();
    const app = start(node, { owner: true, pollMs: 5 });
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write("q");
    await until(() => app.frame().includes("stopping the node: 3 request(s)/shard(s) still running"));
    expect(node.servingCalls).toEqual([false]);
    expect(app.state.unmounted).toBe(false);
    node.queued = 0;
    node.active = 0;
    await until(() => app.state.unmounted);
  });

  test("owning the node, a second q stops it without waiting", async () => {
    const node = new FakeNode();
    const app = start(node, { owner: true });
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write("q");
    await until(() => app.frame().includes("stopping the node"));
    app.stdin.write("q");
    await until(() => app.state.unmounted);
    expect(node.active).toBeGreaterThan(0);
  });

  test("keys that arrive in one chunk (typed fast, or sent at once) act one by one", async () => {
    const node = new FakeNode();
    const app = start(node);
    await until(() => app.frame().includes("NVIDIA H100"));
    app.stdin.write("m");
    await until(() => app.frame().includes("[ ] mnist-8"));
    app.stdin.write("j\r");
    await until(() => node.modelCalls.length === 1);
    expect(node.modelCalls).toEqual(["serve mnist-8"]);
    node.finishPull();
    app.unmount();
  });
});
