import { describe, expect, test } from "bun:test";
import { infernet } from "../../test/helpers/cli.ts";
import { tempDir } from "../../test/helpers/paths.ts";

/** `infernet demo` end to end: four real node processes on 127.0.0.1, a real client, real models. */
describe("infernet demo", () => {
  test("starts an aggregator and 3 providers, streams a prompt, runs a verified sharded MNIST job and reports it", async () => {
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
  });

  test("an --images file that does not exist is refused before any node starts", async () => {
    using home = tempDir();
    const r = await infernet(["demo", "--images", "/nonexistent/images.gz"], { home: home.path });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("demo: /nonexistent/images.gz does not exist");
    expect(r.stdout).not.toContain("infernet start");
  });
});
