/** Helpers the benchmarks share. */

/** mulberry32: a small seeded PRNG; each call gives the next 32-bit word. */
export function mulberry32Words (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6D2B79F5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
}

/** mulberry32 as floats in [0, 1). */
export function mulberry32 (seed: number): () => number {
  const next = mulberry32Words(seed)
  return () => next() / 4294967296
}
