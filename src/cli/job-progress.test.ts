import { describe, expect, test } from "bun:test";
import { SHARD_STATES, type ShardState } from "../jobs/states.ts";
import type { JobSummary } from "../node/aggregator/api.ts";
import type { Output } from "./command.ts";
import {
  JobProgressView,
  PLAIN_LINE_INTERVAL_MS,
  progressCounts,
  renderProgressLine,
  renderShards,
} from "./job-progress.ts";

const codes = (...states: ShardState[]) => Uint8Array.from(states.map((s) => SHARD_STATES.indexOf(s)));

const job = (patch: Partial<JobSummary> = {}): JobSummary => ({
  id: "job-1",
  state: "running",
  shardCount: 20,
  shardsReturned: 12,
  shardsVerified: 12,
  retries: 2,
  ...patch,
});

describe("renderShards", () => {
  test("one cell per shard when they fit", () => {
    expect(renderShards(codes("queued", "leased", "running", "returned", "verified", "failed", "reassigned"), 80)).toBe(
      "·▸▸▪✓×·",
    );
  });

  test("buckets when they do not: each cell shows the least advanced shard, a failure first", () => {
    const states = codes("verified", "verified", "verified", "running", "verified", "failed", "queued", "verified");
    expect(renderShards(states, 4)).toBe("✓▸×·");
    expect(renderShards(states, 2)).toBe("▸×");
    expect(renderShards(states, 1)).toBe("×");
  });

  test("exactly `cells` glyphs for any shard count", () => {
    for (const n of [9, 100, 1_000, 100_000]) {
      const states = new Uint8Array(n).fill(SHARD_STATES.indexOf("verified"));
      expect([...renderShards(states, 7)]).toHaveLength(7);
    }
  });

  test("nothing for no shards or no room; unknown codes count as queued", () => {
    expect(renderShards(new Uint8Array(), 10)).toBe("");
    expect(renderShards(codes("verified"), 0)).toBe("");
    expect(renderShards(Uint8Array.from([200]), 5)).toBe("·");
  });
});

describe("progress line", () => {
  test("counts: verified of all, reassigned when any, late when expected", () => {
    expect(progressCounts(job())).toBe("12/20 shards verified, 2 reassigned");
    expect(progressCounts(job({ retries: 0 }))).toBe("12/20 shards verified");
    expect(progressCounts(job({ late: true, retries: 0 }))).toBe("12/20 shards verified, late for its deadline");
  });

  test("fits the terminal width: cells per shard, then buckets, then counts alone", () => {
    const states = new Uint8Array(20).fill(SHARD_STATES.indexOf("verified"));
    const wide = renderProgressLine(job(), states, 120, 65_000);
    expect(wide).toBe(`[${"✓".repeat(20)}] 12/20 shards verified, 2 reassigned  1m05s`);
    const narrow = renderProgressLine(job(), states, 60, 65_000);
    expect([...narrow].length).toBeLessThanOrEqual(59);
    expect(narrow).toMatch(/^\[✓+\] 12\/20/);
    const tiny = renderProgressLine(job(), states, 30, 65_000);
    expect(tiny).toBe("12/20 shards verified, 2 reas");
  });
});

function capture(isTTY: boolean): Output & { text: string } {
  const out = {
    text: "",
    isTTY,
    columns: 100,
    write(t: string) {
      out.text += t;
    },
  };
  return out;
}

describe("JobProgressView", () => {
  test("a TTY line is redrawn in place and ended by finish", () => {
    const out = capture(true);
    const clock = { t: 0 };
    const view = new JobProgressView(out, 0, () => clock.t);
    view.update({ type: "progress", job: job({ shardsVerified: 0, retries: 0 }), shards: codes("queued", "queued") });
    clock.t = 1_000;
    view.update({ type: "finished", job: job({ state: "verified", shardsVerified: 20, retries: 0 }) });
    view.finish();
    expect(out.text).toBe("\r[··] 0/20 shards verified  0s\x1b[K\r[··] 20/20 shards verified  1s\x1b[K\n");
  });

  test("a log gets a line per change, throttled, and always the final one", () => {
    const out = capture(false);
    const clock = { t: 0 };
    const view = new JobProgressView(out, 0, () => clock.t);
    const s = codes("queued");
    view.update({ type: "progress", job: job({ shardsVerified: 1, retries: 0 }), shards: s });
    view.update({ type: "progress", job: job({ shardsVerified: 1, retries: 0 }), shards: s });
    clock.t = 100;
    view.update({ type: "progress", job: job({ shardsVerified: 2, retries: 0 }), shards: s });
    clock.t = PLAIN_LINE_INTERVAL_MS + 100;
    view.update({ type: "progress", job: job({ shardsVerified: 3, retries: 0 }), shards: s });
    clock.t += 10;
    view.update({ type: "finished", job: job({ state: "verified", shardsVerified: 20, retries: 0 }) });
    expect(out.text.split("\n").filter(Boolean)).toEqual([
      "1/20 shards verified  0s",
      "3/20 shards verified  2s",
      "20/20 shards verified  2s",
    ]);
  });
});
