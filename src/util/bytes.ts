/**
 * Removes the first `n` bytes from a queue of chunks and returns them as one array: a view of the first
 * chunk when it holds them all, unless `copy` asks for bytes of their own. The queue must hold `n` bytes.
 */
export function takeBytes(chunks: Uint8Array[], n: number, copy = false): Uint8Array {
  const first = chunks[0];
  if (first && first.byteLength >= n) {
    if (first.byteLength === n) chunks.shift();
    else chunks[0] = first.subarray(n);
    return copy ? first.slice(0, n) : first.subarray(0, n);
  }
  const out = new Uint8Array(n);
  let at = 0;
  while (at < n) {
    const chunk = chunks[0] as Uint8Array;
    const used = Math.min(chunk.byteLength, n - at);
    out.set(chunk.subarray(0, used), at);
    at += used;
    if (used === chunk.byteLength) chunks.shift();
    else chunks[0] = chunk.subarray(used);
  }
  return out;
}
