import { statSync } from "node:fs";
import { join, resolve } from "node:path";
import { DownloadError, errorMessage, IntegrityError } from "../util/errors.ts";
import { VERSION } from "../version.ts";
import type { CatalogFile } from "./catalog.ts";

/**
 * Where a catalog file can come from: a mirror folder, or an http(s) URL (the mirror's, then the
 * catalog's public ones). Every source can serve a byte range, so a download can resume from any of
 * them: the content is pinned by the catalog's sha256, not by the source.
 */
export interface Source {
  /** The URL or absolute path, for messages and logs. */
  label: string;
  /** Network sources are worth splitting into parallel ranged parts; a local folder is not. */
  parallel: boolean;
  /** Opens the bytes from `offset` to `end` (exclusive). */
  open(offset: number, end: number, signal: AbortSignal): Promise<Opened>;
}

export interface Opened {
  body: ReadableStream<Uint8Array>;
  /** Where the body really starts: 0 when a server ignored the Range header and sent the whole file. */
  offset: number;
}

/** A failure of one attempt at one source; `retryable` ones are worth another attempt after progress. */
export class TransferFailure extends DownloadError {
  readonly retryable: boolean;

  constructor(message: string, retryable: boolean, cause?: unknown) {
    super(message, { cause });
    this.retryable = retryable;
  }
}

const HTTP_URL = /^https?:\/\//i;

/** The sources for a file, in the order they are tried: the mirror (folder or URL), then the catalog's URLs. */
export function sourcesFor(file: CatalogFile, mirror: string): Source[] {
  const sources: Source[] = [];
  const m = mirror.trim();
  if (m) {
    if (HTTP_URL.test(m)) sources.push(httpSource(`${m.replace(/\/+$/, "")}/${file.file}`, file.size));
    else sources.push(folderSource(join(resolve(m), file.file), file.size));
  }
  for (const url of file.sources) sources.push(httpSource(url, file.size));
  return sources;
}

export function folderSource(path: string, size: number): Source {
  return {
    label: path,
    parallel: false,
    async open(offset, end) {
      let actual: number;
      try {
        const st = statSync(path);
        if (!st.isFile()) throw new Error("not a file");
        actual = st.size;
      } catch (cause) {
        throw new TransferFailure(`${path} is not in the mirror folder`, false, cause);
      }
      if (actual !== size) throw new IntegrityError(`${path} is ${actual} bytes, the catalog says ${size}`);
      return { body: Bun.file(path).slice(offset, end).stream(), offset };
    },
  };
}

export function httpSource(url: string, size: number): Source {
  return {
    label: url,
    parallel: true,
    async open(offset, end, signal) {
      // Compressed transfer would make byte ranges refer to the wrong bytes.
      const headers: Record<string, string> = { "accept-encoding": "identity", "user-agent": `infernet/${VERSION}` };
      if (offset !== 0 || end !== size) headers.range = `bytes=${offset}-${end - 1}`;
      let res: Response;
      try {
        res = await fetch(url, { headers, signal, redirect: "follow" });
      } catch (cause) {
        if (signal.aborted) throw cause;
        throw new TransferFailure(`${url}: ${networkMessage(cause)}`, true, cause);
      }
      if (res.status === 206) {
        const range = parseContentRange(res.headers.get("content-range"));
        if (range?.total !== undefined && range.total !== size) {
          await res.body?.cancel();
          throw new IntegrityError(`${url} serves ${range.total} bytes, the catalog says ${size}`);
        }
        if (!range || range.start !== offset || !res.body) {
          await res.body?.cancel();
          throw new TransferFailure(`${url}: unexpected Content-Range "${res.headers.get("content-range")}"`, false);
        }
        return { body: res.body, offset };
      }
      if (res.status === 200 && res.body) {
        const length = Number(res.headers.get("content-length") ?? Number.NaN);
        if (Number.isFinite(length) && length !== size) {
          await res.body.cancel();
          throw new IntegrityError(`${url} serves ${length} bytes, the catalog says ${size}`);
        }
        return { body: res.body, offset: 0 };
      }
      await res.body?.cancel();
      if (res.status === 416) {
        // Asked for bytes past the end: the server's file is shorter than the catalog's.
        const total = res.headers.get("content-range")?.match(/^bytes \*\/(\d+)$/)?.[1];
        if (total !== undefined && Number(total) !== size) {
          throw new IntegrityError(`${url} serves ${total} bytes, the catalog says ${size}`);
        }
      }
      // Server trouble may pass; a 404 or 403 will not.
      const retryable = res.status >= 500 || res.status === 408 || res.status === 429;
      throw new TransferFailure(`${url}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`, retryable);
    },
  };
}

/** Bun's network errors end with advice about `verbose: true` that means nothing to a user. */
export function networkMessage(err: unknown): string {
  return errorMessage(err).replace(/\.? For more information, pass `verbose: true`.*$/s, "");
}

/** Parses `bytes START-END/TOTAL` (TOTAL may be `*`). */
export function parseContentRange(
  header: string | null,
): { start: number; end: number; total: number | undefined } | undefined {
  const m = header?.match(/^bytes (\d+)-(\d+)\/(\d+|\*)$/);
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === "*" ? undefined : Number(m[3]) };
}
