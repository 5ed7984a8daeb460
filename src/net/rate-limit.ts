/**
 * Token buckets keyed by peer or author: `rate` tokens a second up to `burst`. The map of buckets
 * is bounded by `maxKeys`; past it the idle buckets (full again) are dropped first, and if every
 * bucket is busy the oldest half goes, so a flood of new keys cannot grow memory without bound.
 */
export class TokenBuckets {
  readonly rate: number
  readonly burst: number
  private readonly maxKeys: number
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  constructor (rate: number, burst: number, maxKeys = 4096) {
    this.rate = rate
    this.burst = burst
    this.maxKeys = maxKeys
  }

  /** Takes `n` tokens from `key`'s bucket if it holds them; false (and takes nothing) otherwise. */
  take (key: string, n = 1, now = Date.now()): boolean {
    let b = this.buckets.get(key)
    if (b == null) {
      if (this.buckets.size >= this.maxKeys) this.prune(now)
      b = { tokens: this.burst, at: now }
      this.buckets.set(key, b)
    }
    b.tokens = Math.min(this.burst, b.tokens + Math.max(0, now - b.at) * this.rate / 1000)
    b.at = now
    if (b.tokens < n) return false
    b.tokens -= n
    return true
  }

  /** How long until `key` holds `n` tokens again, in ms (0 if it does now). */
  wait (key: string, n = 1, now = Date.now()): number {
    const b = this.buckets.get(key)
    if (b == null) return 0
    const tokens = Math.min(this.burst, b.tokens + Math.max(0, now - b.at) * this.rate / 1000)
    return tokens >= n ? 0 : Math.ceil((n - tokens) * 1000 / this.rate)
  }

  delete (key: string): void { this.buckets.delete(key) }

  get size (): number { return this.buckets.size }

  private prune (now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + (now - b.at) * this.rate / 1000 >= this.burst) this.buckets.delete(k)
    }
    if (this.buckets.size < this.maxKeys) return
    let drop = Math.ceil(this.buckets.size / 2)
    for (const k of this.buckets.keys()) {
      if (drop-- <= 0) break
      this.buckets.delete(k)
    }
  }
}
