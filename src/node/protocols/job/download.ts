import { createHash, type Hash } from "node:crypto";
import {
  closeSync,
  existsSync,
  ftruncateSync,
  openSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import type { PeerId } from "@libp2p/interface";
import { IntegrityError } from "../../../util/errors.ts";
import { WIRE_VERSION } from "../../wire.ts";
import { Call, type CallContext } from "./call.ts";
import { OUTPUT_CHUNK_BYTES, OutputReplySchema } from "./messages.ts";

/**
 * The client side of an output download. Bytes go to `<dest>.partial`; a later call resumes from its
 * size (the aggregator starts over when the partial file is longer than the output). The sha256 of
 * the whole file is checked before it is renamed to `dest`; a mismatch deletes the partial file.
 *
 * Writes are synchronous on purpose: frames that arrive are buffered until read (see `FrameStream`),
 * and a synchronous write lets no more arrive meanwhile, so however slow the disk, at most one
 * transport chunk waits beside the frame being written.
 */

export interface FetchOutputOptions {
  signal?: AbortSignal;
  /** Called after each chunk is written: bytes of the output on disk so far. */
  onBytes?: (bytes: number) => void;
}

export interface FetchedOutput {
  bytes: number;
  sha256: string;
  records: number;
}

export async function fetchJobOutput(
  context: CallContext,
  peer: PeerId,
  jobId: string,
  dest: string,
  options: FetchOutputOptions = {},
): Promise<FetchedOutput> {
  const partial = `${dest}.partial`;
  // Appending: every write lands at the end, which is where the next chunk belongs.
  const fd = openSync(partial, "a+");
  let closed = false;
  const close = () => {
    if (!closed) closeSync(fd);
    closed = true;
  };
  try {
    // Hash what is already here before asking, so the chunks never wait on it.
    const hash = createHash("sha256");
    const held = hashFile(fd, hash);
    using call = await Call.open(context, peer, `the output of job ${jobId}`, options.signal);
    try {
      await call.send({ v: WIRE_VERSION, type: "output", jobId, offset: held });
      await call.closeWrite();
      const file = await call.read(OutputReplySchema);
      if (file.type !== "file") throw call.broken(`${file.type} before the file's size`);
      if (file.offset !== held && file.offset !== 0) throw call.broken(`resuming at ${file.offset}, not ${held} or 0`);
      let digest: Hash = hash;
      if (file.offset !== held) {
        ftruncateSync(fd, 0);
        digest = createHash("sha256");
      }
      let at = file.offset;
      for (;;) {
        const reply = await call.read(OutputReplySchema);
        if (reply.type === "end") break;
        if (reply.type !== "chunk") throw call.broken(`${reply.type} in the middle of the file`);
        if (at + reply.data.byteLength > file.bytes) throw call.broken(`more than the file's ${file.bytes} bytes`);
        writeAll(fd, reply.data);
        digest.update(reply.data);
        at += reply.data.byteLength;
        options.onBytes?.(at);
      }
      if (at !== file.bytes) throw call.broken(`the file ended at ${at} of its ${file.bytes} bytes`);
      call.finish();
      const sha256 = digest.digest("hex");
      close();
      if (sha256 !== file.sha256) {
        rmSync(partial, { force: true });
        throw new IntegrityError(`the output of job ${jobId} has sha256 ${sha256}; ${peer} announced ${file.sha256}`, {
          hint: "download it again",
        });
      }
      renameSync(partial, dest);
      return { bytes: file.bytes, sha256, records: file.records };
    } catch (err) {
      throw err instanceof IntegrityError ? err : call.failure(err);
    }
  } finally {
    close();
    // A failed first try leaves no empty partial file behind.
    if (existsSync(partial) && statSync(partial).size === 0) rmSync(partial, { force: true });
  }
}

/** Feeds the file's bytes to `hash`; returns its length. */
function hashFile(fd: number, hash: Hash): number {
  const buffer = new Uint8Array(OUTPUT_CHUNK_BYTES);
  let at = 0;
  for (;;) {
    const n = readSync(fd, buffer, 0, buffer.byteLength, at);
    if (n === 0) break;
    hash.update(buffer.subarray(0, n));
    at += n;
  }
  return at;
}

function writeAll(fd: number, data: Uint8Array): void {
  for (let at = 0; at < data.byteLength; ) at += writeSync(fd, data, at);
}
