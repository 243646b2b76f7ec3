import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SHARED_MODELS, STORIES_GGUF, tempDir } from "../../test/helpers/paths.ts";
import { rangeServer } from "../../test/helpers/range-server.ts";
import { type CatalogFile, modelFile, requireModel } from "./catalog.ts";
import { type DownloadProgress, downloadFile } from "./download.ts";
import { sha256File } from "./hash.ts";
import { partialPaths } from "./partial-state.ts";

const STORIES = modelFile(requireModel("stories260k"));
const BYTES = readFileSync(STORIES_GGUF);
/** A port nothing listens on (the first port of the dynamic range is closed at once after binding). */
const CLOSED = (() => {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = s.port;
  s.stop(true);
  return `http://127.0.0.1:${port}/stories260K.gguf`;
})();

function fileFrom(...sources: string[]): CatalogFile {
  return { ...STORIES, sources };
}

function leftovers(dest: string): string[] {
  const { partial, state } = partialPaths(dest);
  return [partial, state, `${dest}.lock`].filter((p) => existsSync(p));
}

describe("downloadFile", () => {
  test("downloads over HTTP, verifies the sha256, reports progress and leaves nothing behind", async () => {
    await using server = rangeServer({ "/m/stories260K.gguf": STORIES_GGUF });
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const events: DownloadProgress[] = [];
    const r = await downloadFile(fileFrom(`${server.url}/m/stories260K.gguf`), dest, {
      onProgress: (p) => events.push(p),
    });
    expect(readFileSync(dest).equals(BYTES)).toBe(true);
    expect(r).toMatchObject({ source: `${server.url}/m/stories260K.gguf`, transferred: BYTES.length, resumedFrom: 0 });
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]).toMatchObject({ status: 200, range: undefined });
    expect(events[0]).toMatchObject({ phase: "download", done: 0, total: BYTES.length });
    expect(events.at(-1)).toMatchObject({ phase: "verify", done: BYTES.length, total: BYTES.length });
    expect(leftovers(dest)).toEqual([]);
  });

  test("a dropped connection resumes with a Range request for the remaining bytes only", async () => {
    await using server = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    server.behaviour.dropAfter = 300_000;
    server.behaviour.dropTimes = 1;
    server.behaviour.chunkDelayMs = 1;
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const r = await downloadFile(fileFrom(`${server.url}/stories260K.gguf`), dest);
    expect(readFileSync(dest).equals(BYTES)).toBe(true);
    expect(server.requests).toHaveLength(2);
    const [first, second] = server.requests;
    expect(first).toMatchObject({ status: 200, range: undefined });
    expect(second?.status).toBe(206);
    expect(second?.start).toBeGreaterThan(0);
    expect(second?.start).toBeLessThanOrEqual(300_000);
    expect(second?.range).toBe(`bytes=${second?.start}-${BYTES.length - 1}`);
    // Bytes written in total equal the file size: nothing was fetched twice.
    expect(r.transferred).toBe(BYTES.length);
  });

  test("an abort leaves a resumable partial; the next call fetches only the rest", async () => {
    await using server = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    server.behaviour.chunkBytes = 16 * 1024;
    server.behaviour.chunkDelayMs = 5;
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const file = fileFrom(`${server.url}/stories260K.gguf`);
    const controller = new AbortController();
    const failed = await downloadFile(file, dest, {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.done >= 400_000) controller.abort();
      },
    }).catch((e: unknown) => e);
    expect((failed as Error).name).toBe("AbortedError");
    expect(existsSync(dest)).toBe(false);
    expect(leftovers(dest)).toEqual([`${dest}.partial`, `${dest}.partial.json`]);
    const saved = JSON.parse(readFileSync(`${dest}.partial.json`, "utf8")) as { parts: { done: number }[] };
    const had = saved.parts[0]?.done ?? 0;
    expect(had).toBeGreaterThanOrEqual(400_000);

    server.behaviour.chunkDelayMs = 0;
    const r = await downloadFile(file, dest);
    expect(readFileSync(dest).equals(BYTES)).toBe(true);
    expect(r.resumedFrom).toBe(had);
    expect(r.transferred).toBe(BYTES.length - had);
    expect(server.requests.at(-1)).toMatchObject({ status: 206, range: `bytes=${had}-${BYTES.length - 1}` });
    expect(leftovers(dest)).toEqual([]);
  });

  test("a server that ignores Range on resume makes a clean restart", async () => {
    await using server = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    server.behaviour.chunkBytes = 16 * 1024;
    server.behaviour.chunkDelayMs = 5;
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const file = fileFrom(`${server.url}/stories260K.gguf`);
    const controller = new AbortController();
    await downloadFile(file, dest, {
      signal: controller.signal,
      onProgress: (p) => p.done > 200_000 && controller.abort(),
    }).catch(() => undefined);
    expect(existsSync(`${dest}.partial`)).toBe(true);
    server.behaviour.ranges = false;
    server.behaviour.chunkDelayMs = 0;
    const r = await downloadFile(file, dest);
    expect(readFileSync(dest).equals(BYTES)).toBe(true);
    expect(server.requests.at(-1)).toMatchObject({ status: 200 });
    expect(server.requests.at(-1)?.range).toStartWith("bytes=");
    expect(r.transferred).toBe(BYTES.length);
  });

  test("large files come in parallel ranged parts written into one file", async () => {
    await using server = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    await downloadFile(fileFrom(`${server.url}/stories260K.gguf`), dest, { parts: 4, partThreshold: 1 });
    expect(readFileSync(dest).equals(BYTES)).toBe(true);
    expect(server.requests).toHaveLength(4);
    expect(server.requests.every((r) => r.status === 206)).toBe(true);
    const spans = server.requests.map((r) => [r.start, r.end]).sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0));
    expect(spans[0]?.[0]).toBe(0);
    expect(spans.at(-1)?.[1]).toBe(BYTES.length);
    for (let i = 1; i < spans.length; i++) expect(spans[i]?.[0]).toBe(spans[i - 1]?.[1] ?? -1);
  });

  test("parallel parts resume part by part after an abort, and survive a dropped part", async () => {
    await using server = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    server.behaviour.chunkBytes = 8 * 1024;
    server.behaviour.chunkDelayMs = 5;
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const file = fileFrom(`${server.url}/stories260K.gguf`);
    const controller = new AbortController();
    const opts = { parts: 3, partThreshold: 1 };
    await downloadFile(file, dest, {
      ...opts,
      signal: controller.signal,
      onProgress: (p) => p.done > 300_000 && controller.abort(),
    }).catch(() => undefined);
    const saved = JSON.parse(readFileSync(`${dest}.partial.json`, "utf8")) as {
      parts: { start: number; end: number; done: number }[];
    };
    expect(saved.parts).toHaveLength(3);
    const had = saved.parts.reduce((s, p) => s + p.done, 0);
    expect(had).toBeGreaterThan(300_000);
    const before = server.requests.length;
    server.behaviour.chunkDelayMs = 1;
    server.behaviour.dropAfter = 50_000;
    server.behaviour.dropTimes = 1;
    const r = await downloadFile(file, dest, opts);
    expect(readFileSync(dest).equals(BYTES)).toBe(true);
    expect(r.transferred).toBe(BYTES.length - had);
    const resumed = server.requests.slice(before, before + 3);
    for (const p of saved.parts) {
      expect(resumed.some((q) => q.range === `bytes=${p.start + p.done}-${p.end - 1}`)).toBe(true);
    }
  });

  test("a wrong sha256 is refused and the file is not kept", async () => {
    await using server = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const wrong = { ...fileFrom(`${server.url}/stories260K.gguf`), sha256: "0".repeat(64) };
    const err = (await downloadFile(wrong, dest).catch((e: unknown) => e)) as Error;
    expect(err.name).toBe("IntegrityError");
    expect(err.message).toContain(
      `sha256 of stories260K.gguf from ${server.url}/stories260K.gguf is ${STORIES.sha256}`,
    );
    expect(err.message).toContain(`expected ${"0".repeat(64)}`);
    expect(existsSync(dest)).toBe(false);
    expect(leftovers(dest)).toEqual([]);
  });

  test("a source serving the wrong size is refused before the download", async () => {
    await using server = rangeServer({ "/stories260K.gguf": BYTES.subarray(0, 1000) });
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const err = (await downloadFile(fileFrom(`${server.url}/stories260K.gguf`), dest).catch(
      (e: unknown) => e,
    )) as Error;
    expect(err.name).toBe("IntegrityError");
    expect(err.message).toContain(`serves 1000 bytes, the catalog says ${BYTES.length}`);
    expect(leftovers(dest)).toEqual([]);
  });

  test("the mirror folder comes first", async () => {
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const r = await downloadFile(fileFrom(CLOSED), dest, { mirror: SHARED_MODELS });
    expect(r.source).toBe(join(SHARED_MODELS, "stories260K.gguf"));
    expect(await sha256File(dest)).toBe(STORIES.sha256);
  });

  test("a mirror URL is <mirror>/<file>; redirects are followed", async () => {
    await using server = rangeServer(
      { "/files/stories260K.gguf": STORIES_GGUF },
      {
        "/mirror/stories260K.gguf": "/files/stories260K.gguf",
      },
    );
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const r = await downloadFile(fileFrom(CLOSED), dest, { mirror: `${server.url}/mirror/` });
    expect(r.source).toBe(`${server.url}/mirror/stories260K.gguf`);
    expect(server.requests.map((q) => [q.path, q.status])).toEqual([
      ["/mirror/stories260K.gguf", 302],
      ["/files/stories260K.gguf", 200],
    ]);
    expect(readFileSync(dest).equals(BYTES)).toBe(true);
  });

  test("failing sources are skipped in order: missing from mirror, refused, HTTP 404, then a good one", async () => {
    await using server = rangeServer({ "/ok/stories260K.gguf": STORIES_GGUF });
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const r = await downloadFile(
      fileFrom(CLOSED, `${server.url}/gone/stories260K.gguf`, `${server.url}/ok/stories260K.gguf`),
      dest,
      {
        mirror: dir.path,
      },
    );
    expect(r.source).toBe(`${server.url}/ok/stories260K.gguf`);
    expect(server.requests.map((q) => q.status)).toEqual([404, 200]);
  });

  test("when every source fails the error lists them and points at INFERNET_MODEL_MIRROR", async () => {
    await using server = rangeServer({});
    server.behaviour.statusFor["/x/stories260K.gguf"] = 503;
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const err = (await downloadFile(fileFrom(CLOSED, `${server.url}/x/stories260K.gguf`), dest).catch(
      (e: unknown) => e,
    )) as Error & { hint?: string };
    expect(err.name).toBe("DownloadError");
    expect(err.message).toContain("could not download stories260K.gguf (tried 2)");
    expect(err.message).toContain(CLOSED);
    expect(err.message).toContain(`${server.url}/x/stories260K.gguf: HTTP 503`);
    expect(err.hint).toContain("INFERNET_MODEL_MIRROR");
  });

  test("a stalled connection times out, resumes once, then the next source finishes", async () => {
    await using stalling = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    stalling.behaviour.stallAt = 100_000;
    await using good = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const r = await downloadFile(fileFrom(`${stalling.url}/stories260K.gguf`, `${good.url}/stories260K.gguf`), dest, {
      stallTimeoutMs: 300,
    });
    expect(stalling.requests).toHaveLength(2);
    expect(stalling.requests[1]?.range).toBe(`bytes=100000-${BYTES.length - 1}`);
    expect(good.requests[0]?.range).toBe(`bytes=100000-${BYTES.length - 1}`);
    expect(r.source).toBe(`${good.url}/stories260K.gguf`);
    expect(readFileSync(dest).equals(BYTES)).toBe(true);
  });

  test("two concurrent downloads of one file take turns on the lock; the second finds it present", async () => {
    await using server = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    server.behaviour.chunkDelayMs = 5;
    server.behaviour.chunkBytes = 64 * 1024;
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const file = fileFrom(`${server.url}/stories260K.gguf`);
    const isPresent = async () => existsSync(dest) && (await sha256File(dest)) === STORIES.sha256;
    const phases: string[] = [];
    const [a, b] = await Promise.all([
      downloadFile(file, dest, { isPresent }),
      Bun.sleep(20).then(() => downloadFile(file, dest, { isPresent, onProgress: (p) => phases.push(p.phase) })),
    ]);
    expect(a.source).toBe(`${server.url}/stories260K.gguf`);
    expect(b.source).toBeUndefined();
    expect(phases).toEqual(["wait"]);
    expect(server.requests).toHaveLength(1);
    expect(readFileSync(dest).equals(BYTES)).toBe(true);
  });

  test("a lock left by a dead process is taken over", async () => {
    await using server = rangeServer({ "/stories260K.gguf": STORIES_GGUF });
    using dir = tempDir();
    const dest = join(dir.path, "stories260K.gguf");
    const dead = Bun.spawnSync(["true"]).pid;
    writeFileSync(`${dest}.lock`, JSON.stringify({ pid: dead, host: (await import("node:os")).hostname(), at: 0 }));
    await downloadFile(fileFrom(`${server.url}/stories260K.gguf`), dest);
    expect(readFileSync(dest).equals(BYTES)).toBe(true);
    expect(leftovers(dest)).toEqual([]);
  });
});
