import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { infernet } from "../../test/helpers/cli.ts";
import { tempDir } from "../../test/helpers/paths.ts";
import { demoImages, GENERATED_IMAGES, MNIST_IMAGES } from "./demo.ts";

/**
 * A whole demo (four node processes, DHT discovery, a generation and a sharded job) takes 15-40 s
 * here; the suite's default 60 s per test leaves a loaded machine too little room.
 */
const WHOLE_DEMO_TIMEOUT_MS = 180_000;

/** `infernet demo` end to end: four real node processes on 127.0.0.1, a real client, real models. */
describe("infernet demo", () => {
  test(
    "starts an aggregator and 3 providers, streams a prompt, runs a verified sharded MNIST job and reports it",
    async () => {
      using home = tempDir();
      const r = await infernet(["demo", "--count", "1000"], { home: home.path });
      expect(r.code).toBe(0);
      const out = r.stdout;
      const peers = [...out.matchAll(/^provider-\d: peer (\S+)$/gm)].map((m) => m[1] ?? "");
      expect(peers).toHaveLength(3);
      expect(out).toContain(", there was a little girl named Lily.");
      expect(out).toContain("MNIST images: the first 1000 of ");
      expect(out).toContain("shards: 2 (redundancy 2), providers: ");
      expect(out).toMatch(/verified: 2\/2, retries: \d+/);
      expect(out).toMatch(/cost: [\d.]+ sats \(providers [\d.]+ sats \+ 1% fee/);
      // Each shard's two copies came from two of the demo's providers, and were verified.
      const copies = [...out.matchAll(/^ {6}(\S+)… verified/gm)].map((m) => m[1] ?? "");
      expect(copies).toHaveLength(4);
      for (const c of copies) expect(peers.some((p) => p.startsWith(c))).toBe(true);
      expect(out).toEndWith('Done. Try: infernet run stories260k "The little dog"\n');
    },
    WHOLE_DEMO_TIMEOUT_MS,
  );

  test(
    "--generated: the sharded job runs on generated rings and bars, each shard verified, and classifies them",
    async () => {
      using home = tempDir();
      const r = await infernet(["demo", "--generated"], { home: home.path });
      expect(r.code).toBe(0);
      const out = r.stdout;
      expect(out).toContain("Using 200 generated images (rings and bars) instead of MNIST (as --generated asked).\n");
      expect(out).not.toContain("MNIST images:");
      expect(out).toMatch(/^output: \S+digits\.jsonl \(200 records, /m);
      expect(out).toContain("shards: 1 (redundancy 2), providers: ");
      expect(out).toMatch(/verified: 1\/1, retries: \d+/);
      // Image 0 is a ring: the model reads it as a 0, and two providers computed it.
      const first = JSON.parse(/^first line of digits\.jsonl: (.+)$/m.exec(out)?.[1] ?? "{}");
      expect(first).toMatchObject({ index: 0, class: 0, label: "0" });
      expect(first.providers).toHaveLength(2);
      expect([...out.matchAll(/^ {6}(\S+)… verified/gm)]).toHaveLength(2);
      expect(out).toEndWith('Done. Try: infernet run stories260k "The little dog"\n');
    },
    WHOLE_DEMO_TIMEOUT_MS,
  );

  test("an --images file that does not exist is refused before any node starts", async () => {
    using home = tempDir();
    const r = await infernet(["demo", "--images", "/nonexistent/images.gz"], { home: home.path });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("demo: /nonexistent/images.gz does not exist");
    expect(r.stdout).not.toContain("infernet start");
  });

  test("--images and --generated together are refused", async () => {
    using home = tempDir();
    const r = await infernet(["demo", "--generated", "--images", "x.gz"], { home: home.path });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("demo: --images and --generated name two sources of images; give one");
  });
});

describe("the demo's images without an MNIST file", () => {
  test("are 200 generated 28x28 images in IDX, which the real mnist-8 classifies as drawn: rings 0, bars 1", async () => {
    using dir = tempDir();
    using home = tempDir();
    const missing = join(dir.path, "no-data", MNIST_IMAGES);
    let said = "";
    const file = demoImages({ write: (text) => (said += text) }, dir.path, undefined, undefined, [missing]);
    expect(said).toBe(
      `Using 200 generated images (rings and bars) instead of MNIST (no MNIST test set found: looked for ${missing}; --images names one).\n`,
    );
    const idx = readFileSync(file);
    expect([0, 4, 8, 12].map((at) => idx.readUInt32BE(at))).toEqual([0x803, GENERATED_IMAGES, 28, 28]);
    expect(idx.length).toBe(16 + GENERATED_IMAGES * 28 * 28);
    const labels = join(dir.path, "labels.txt");
    writeFileSync(labels, Array.from({ length: GENERATED_IMAGES }, (_, i) => `${i % 2}\n`).join(""));
    const r = await infernet(["run", "mnist-8", "--input", file, "--labels", labels, "--local"], { home: home.path });
    expect(r.code).toBe(0);
    // One line per image ("index, class, score, expected"), and the tally against the drawn shapes.
    expect(r.stdout.trim().split("\n")).toHaveLength(GENERATED_IMAGES);
    expect(r.stderr).toContain(`accuracy: ${GENERATED_IMAGES}/${GENERATED_IMAGES} (100.00%)`);
  });
});
