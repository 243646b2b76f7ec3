/**
 * Test support for the protocol fuzz tests: a seeded random source (mulberry32), so a failing case
 * replays exactly from its seed, and the few draws the tests make from it.
 */
export interface FuzzRandom {
  /** A number in [0, 1). */
  random(): number;
  /** A whole number in [0, n). */
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
  /** `n` random bytes. */
  bytes(n: number): Uint8Array;
}

export function fuzzRandom(seed: number): FuzzRandom {
  let a = seed;
  const random = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  const int = (n: number) => Math.floor(random() * n);
  return {
    random,
    int,
    pick: <T>(xs: readonly T[]): T => xs[int(xs.length)] as T,
    bytes: (n: number) => Uint8Array.from({ length: n }, () => int(256)),
  };
}
