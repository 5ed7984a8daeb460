/**
 * What one peer may cost the directory, as pure, synchronous parts fed the time: how many new
 * owners one source (a sync answer's peer, a gossip record's origin) may introduce in a window,
 * how a sync answer is cut and read, which peers we sync with, and what a rate-limited gossip
 * record gets. Every map here is bounded, so a flood of peer ids cannot grow memory.
 */
import { MAX_LISTINGS, type DirectoryBook } from './book.ts'

/** New owners (not in our book) one source peer may introduce per NEW_OWNER_WINDOW_MS ... */
export const MAX_NEW_OWNERS_PER_PEER = 32
/** ... this window. */
export const NEW_OWNER_WINDOW_MS = 10 * 60_000
/** Source peers whose new-owner budget we track at once (past it the oldest windows go first). */
export const MAX_NEW_OWNER_PEERS = 1024
/** Records in one sync answer at most (the listings, then tombstones). */
export const MAX_SYNC_RECORDS = MAX_LISTINGS + 200
/** Bad records in a sync answer after which we stop reading it. */
export const MAX_BAD_SYNC_RECORDS = 8
/** Peers we sync with per refresh period (on connect, or found through the DHT key). */
export const MAX_SYNC_PEERS = 4

/** A peer over a directory rate or budget. */
export class DirectoryRateLimitError extends Error { name = 'DirectoryRateLimitError' }

/**
 * New owners per source peer: a peer may bring MAX_NEW_OWNERS_PER_PEER owners we do not hold per
 * window (the same owner again costs nothing more); the rest are refused until its window ends.
 */
export class NewOwnerBudget {
  readonly max: number
  readonly windowMs: number
  readonly maxPeers: number
  private readonly peers = new Map<string, { start: number, owners: Set<string> }>()

  constructor (max = MAX_NEW_OWNERS_PER_PEER, windowMs = NEW_OWNER_WINDOW_MS, maxPeers = MAX_NEW_OWNER_PEERS) {
    this.max = max
    this.windowMs = windowMs
    this.maxPeers = maxPeers
  }

  get size (): number { return this.peers.size }

  /** Whether `peer` may introduce `owner` now (and counts it if so). */
  take (peer: string, owner: string, now: number): boolean {
    let p = this.peers.get(peer)
    if (p != null && p.start + this.windowMs <= now) {
      this.peers.delete(peer)
      p = undefined
    }
    if (p == null) {
      if (this.peers.size >= this.maxPeers) this.prune(now)
      p = { start: now, owners: new Set() }
      this.peers.set(peer, p)
    }
    if (p.owners.has(owner)) return true
    if (p.owners.size >= this.max) return false
    p.owners.add(owner)
    return true
  }

  private prune (now: number): void {
    for (const [k, p] of this.peers) if (p.start + this.windowMs <= now) this.peers.delete(k)
    // Still full: the oldest windows go (as a fresh peer id would get a fresh budget anyway).
    for (const k of this.peers.keys()) {
      if (this.peers.size < this.maxPeers) break
      this.peers.delete(k)
    }
  }
}

/**
 * What a sync answer carries: the listings of the owners we have held longest first (so what we
 * hand on is what survived longest with us, not the loudest claims), then our tombstones, at most
 * MAX_SYNC_RECORDS in all, never a blocked owner's.
 */
export function syncAnswer (book: DirectoryBook, isBlocked: (owner: string) => boolean, max = MAX_SYNC_RECORDS): Uint8Array[] {
  return [
    ...book.byTenure().filter(l => !isBlocked(l.owner)).map(l => l.bytes),
    ...book.unlistings()
  ].slice(0, max)
}

/** Reads a sync answer: stops after MAX_SYNC_RECORDS, throws past MAX_BAD_SYNC_RECORDS bad records. */
export class SyncReader {
  readonly maxRecords: number
  readonly maxBad: number
  records = 0
  bad = 0
  constructor (maxRecords = MAX_SYNC_RECORDS, maxBad = MAX_BAD_SYNC_RECORDS) {
    this.maxRecords = maxRecords
    this.maxBad = maxBad
  }

  /** Counts one record (bad or not); returns whether to read another. */
  next (bad: boolean): boolean {
    this.records++
    if (bad) this.bad++
    if (this.bad > this.maxBad) throw new DirectoryRateLimitError(`more than ${this.maxBad} bad records in one sync answer`)
    return this.records < this.maxRecords
  }
}

/** The peers we synced with lately: at most MAX_SYNC_PEERS per period. */
export class SyncPeers {
  readonly periodMs: number
  readonly max: number
  private readonly at = new Map<string, number>()
  constructor (periodMs: number, max = MAX_SYNC_PEERS) {
    this.periodMs = periodMs
    this.max = max
  }

  has (peer: string): boolean { return this.at.has(peer) }
  get size (): number { return this.at.size }

  /** Notes a sync with `peer` (made whether or not `may` said so: a DHT-found peer counts too). */
  note (peer: string, now: number): void { this.at.set(peer, now) }

  /** Whether we may sync with `peer` now (not lately, and fewer than `max` others lately). */
  may (peer: string, now: number): boolean {
    for (const [p, t] of this.at) if (t + this.periodMs < now) this.at.delete(p)
    return !this.at.has(peer) && this.at.size < this.max
  }
}

/**
 * What a gossip record over its origin's rate gets: 'reject' (marks the sender) when the origin
 * sent it to us itself, 'ignore' when an honest peer relayed it (the relay is not at fault).
 * A transport that does not say who relayed counts as direct.
 */
export function rateLimitedVerdict (message: { from: string, via?: string }): 'ignore' | 'reject' {
  return message.via != null && message.via !== message.from ? 'ignore' : 'reject'
}
