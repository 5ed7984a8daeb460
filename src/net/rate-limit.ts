/**
 * Per-peer token buckets for our own request/response protocols: each peer may make `rate`
 * requests per second with bursts of `burst`. Buckets of at most MAX_TRACKED_PEERS peers are
 * kept; past that the table starts over, so a flood of peer ids cannot grow it.
 */
export const MAX_TRACKED_PEERS = 1024

export class PeerRateLimiter {
  private readonly rate: number
  private readonly burst: number
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  constructor (rate: number, burst: number) {
    this.rate = rate
    this.burst = burst
  }

  /** Takes one token for `peer`; false when it has none left. */
  take (peer: string): boolean {
    const now = Date.now()
    const b = this.buckets.get(peer) ?? { tokens: this.burst, at: now }
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.rate / 1000)
    b.at = now
    if (this.buckets.size > MAX_TRACKED_PEERS && !this.buckets.has(peer)) this.buckets.clear()
    this.buckets.set(peer, b)
    if (b.tokens < 1) return false
    b.tokens--
    return true
  }
}
