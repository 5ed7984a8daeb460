/**
 * The one seeded PRNG of the tests and benchmarks: mulberry32, a small, fast 32-bit generator.
 * Everything "random" in a test comes from a seed, so a failure replays exactly. Not for keys or
 * anything secret.
 *
 * `seeded(seed)` is callable (a float in [0, 1), so it passes where a `() => number` is wanted)
 * and carries the helpers: `word`, `float`, `int`, `between`, `bytes`, `pick`.
 */

/** A seeded random source; calling it gives the next float in [0, 1). */
export interface Random {
  (): number
  /** The next 32-bit unsigned word. */
  word: () => number
  /** The next float in [0, 1). */
  float: () => number
  /** An integer in [0, n). */
  int: (n: number) => number
  /** An integer in [min, max], both included. */
  between: (min: number, max: number) => number
  /** `n` bytes, four from each word (little-endian). */
  bytes: (n: number) => Uint8Array
  /** One of `items` (which must not be empty). */
  pick: <T>(items: readonly T[]) => T
}

/** A mulberry32 generator from `seed` (taken as an unsigned 32-bit integer). */
export function seeded (seed: number): Random {
  let s = seed >>> 0
  const word = (): number => {
    s = (s + 0x6D2B79F5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
  const float = (): number => word() / 4294967296
  const int = (n: number): number => Math.floor(float() * n)
  const bytes = (n: number): Uint8Array => {
    const out = new Uint8Array(n)
    let i = 0
    for (; i + 4 <= n; i += 4) {
      const w = word()
      out[i] = w
      out[i + 1] = w >>> 8
      out[i + 2] = w >>> 16
      out[i + 3] = w >>> 24
    }
    if (i < n) {
      let w = word()
      for (; i < n; i++, w >>>= 8) out[i] = w
    }
    return out
  }
  return Object.assign(float, {
    word,
    float,
    int,
    between: (min: number, max: number): number => min + int(max - min + 1),
    bytes,
    pick: <T>(items: readonly T[]): T => {
      if (items.length === 0) throw new RangeError('pick from an empty list')
      return items[int(items.length)]
    }
  })
}

/** `length` seeded bytes: the same seed always gives the same bytes. */
export function seededBytes (length: number, seed: number): Uint8Array {
  return seeded(seed).bytes(length)
}
