/**
 * A bounded memory of peers whose direct path failed, each for a while: reach's failed WebRTC
 * upgrades, and direct dials of a peer held over a relay (limited.ts).
 */
import * as L from './limits.ts'

/**
 * Peers whose direct (WebRTC) path failed: a bounded memory, oldest forgotten first past `max`,
 * each entry for `ttlMs`. While a peer is in it, dials to it skip its relayed WebRTC addresses.
 */
export class FailedPaths {
  private readonly entries = new Map<string, number>()
  private readonly max: number
  private readonly ttlMs: number
  private readonly now: () => number

  constructor (max = L.UPGRADE_FAILED_PEERS_MAX, ttlMs = L.UPGRADE_FAILED_MEMORY_MS, now: () => number = Date.now) {
    this.max = max
    this.ttlMs = ttlMs
    this.now = now
  }

  add (id: string): void {
    this.entries.delete(id)
    this.entries.set(id, this.now() + this.ttlMs)
    while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value as string)
  }

  has (id: string): boolean {
    const until = this.entries.get(id)
    if (until == null) return false
    if (until > this.now()) return true
    this.entries.delete(id)
    return false
  }

  delete (id: string): void { this.entries.delete(id) }

  get size (): number { return this.entries.size }
}

