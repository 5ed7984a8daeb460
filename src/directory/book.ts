/**
 * The directory's book of live listings, as a pure, synchronous model fed verified records and the
 * time: one listing per space (the owner's newest), at most MAX_LISTINGS_PER_OWNER per owner and
 * MAX_LISTINGS in all, each dropped once it is not refreshed within the TTL, and removed at once by
 * its owner's unlisting (kept as a tombstone for a TTL so an older copy cannot come back).
 *
 * What goes when the book is full: an owner over its own bound loses its least recently refreshed
 * listing. The book over its total bound never decides by a listing's own claim (anyone can sign
 * `present: 10000`): it remembers when it first saw each owner, and a newcomer may only push out a
 * listing of an owner first seen after its own; a brand-new owner is refused. A vouched listing
 * (our own, or of a space we are in, whose members we count ourselves) may push out the owner
 * first seen most recently that is not vouched. A held listing's refresh is always taken.
 * Ranking (what a reader sees) is by members present, capped at MAX_PRESENT; the service may lower
 * a claim it can check (a space we are in).
 */
import { MAX_PRESENT, type Listing, type Unlisting } from './listing.ts'

/** Listings one owner may have in a book at once. */
export const MAX_LISTINGS_PER_OWNER = 4
/** Listings a book holds in all. */
export const MAX_LISTINGS = 1000
/** Tombstones a book keeps (the oldest go first past this). */
export const MAX_TOMBSTONES = 1000

export type PutResult = 'added' | 'updated' | 'duplicate' | 'older' | 'unlisted' | 'full'

export interface BookLimits {
  maxListings: number
  maxPerOwner: number
  maxTombstones: number
}

export interface PutOptions {
  /** Ours, or of a space we are in: may push out the newest owner's listing, and is never pushed out by capacity. */
  vouched?: boolean
}

export interface Removal { listing: Listing, reason: 'unlisted' | 'stale' | 'evicted' }

/** Rank order: more members present first, then the most recently refreshed, then by space id. */
export function compareListings (a: { present: number, ts: number, space: string }, b: { present: number, ts: number, space: string }): number {
  const pa = Math.min(a.present, MAX_PRESENT)
  const pb = Math.min(b.present, MAX_PRESENT)
  if (pa !== pb) return pb - pa
  if (a.ts !== b.ts) return b.ts - a.ts
  return a.space < b.space ? -1 : a.space > b.space ? 1 : 0
}

export class DirectoryBook {
  readonly limits: BookLimits
  private readonly bySpace = new Map<string, Listing>()
  private readonly byOwner = new Map<string, Set<string>>()
  /** Owner -> when the book first saw it (kept while the owner holds a listing here). */
  private readonly since = new Map<string, number>()
  /** Spaces whose listing is vouched for (see PutOptions). */
  private readonly vouched = new Set<string>()
  /** `space owner` -> the unlisting's seq and ts. */
  private readonly tombstones = new Map<string, { seq: number, ts: number, bytes: Uint8Array }>()

  constructor (limits: Partial<BookLimits> = {}) {
    this.limits = {
      maxListings: limits.maxListings ?? MAX_LISTINGS,
      maxPerOwner: limits.maxPerOwner ?? MAX_LISTINGS_PER_OWNER,
      maxTombstones: limits.maxTombstones ?? MAX_TOMBSTONES
    }
  }

  get size (): number { return this.bySpace.size }
  get owners (): number { return this.byOwner.size }
  get tombstoneCount (): number { return this.tombstones.size }

  get (space: string): Listing | undefined { return this.bySpace.get(space) }

  /** Whether the book holds a listing of `owner`. */
  hasOwner (owner: string): boolean { return this.byOwner.has(owner) }

  /** When the book first saw `owner` (while it holds a listing of theirs). */
  ownerSince (owner: string): number | undefined { return this.since.get(owner) }

  /** Whether `space` at `seq` by `owner` is no newer than what we hold (so its checks can be skipped). */
  isKnown (space: string, owner: string, seq: number): boolean {
    const held = this.bySpace.get(space)
    if (held != null && held.owner === owner && held.seq >= seq) return true
    const t = this.tombstones.get(`${space} ${owner}`)
    return t != null && t.seq >= seq
  }

  /** Takes a verified listing at `now`; returns what happened and what it pushed out. */
  put (listing: Listing, now = Date.now(), options: PutOptions = {}): { result: PutResult, removed: Removal[] } {
    const vouched = options.vouched === true
    const removed: Removal[] = []
    const t = this.tombstones.get(`${listing.space} ${listing.owner}`)
    if (t != null && t.seq >= listing.seq) return { result: 'unlisted', removed }
    const held = this.bySpace.get(listing.space)
    if (held != null) {
      // Only the space's owner can sign a listing of it (the descriptor says who), so `held` is theirs too.
      if (held.seq > listing.seq) return { result: 'older', removed }
      if (held.seq === listing.seq) return { result: 'duplicate', removed }
      this.bySpace.set(listing.space, listing)
      if (vouched) this.vouched.add(listing.space)
      else this.vouched.delete(listing.space)
      return { result: 'updated', removed }
    }
    const mySince = this.since.get(listing.owner) ?? now
    const mine = this.byOwner.get(listing.owner)
    if (mine != null && mine.size >= this.limits.maxPerOwner) {
      const oldest = [...mine].map(s => this.bySpace.get(s) as Listing).sort((a, b) => a.ts - b.ts)[0]
      this.remove(oldest.space)
      removed.push({ listing: oldest, reason: 'evicted' })
    }
    if (this.bySpace.size >= this.limits.maxListings) {
      const newest = this.newestArrival(listing.owner)
      if (newest == null || (!vouched && (this.since.get(newest.owner) as number) <= mySince)) return { result: 'full', removed }
      this.remove(newest.space)
      removed.push({ listing: newest, reason: 'evicted' })
    }
    this.bySpace.set(listing.space, listing)
    if (vouched) this.vouched.add(listing.space)
    this.since.set(listing.owner, mySince)
    let set = this.byOwner.get(listing.owner)
    if (set == null) {
      set = new Set()
      this.byOwner.set(listing.owner, set)
    }
    set.add(listing.space)
    return { result: 'added', removed }
  }

  /** Takes a verified unlisting: removes the owner's listing of that space if it is no newer. */
  unlist (u: Unlisting): Removal[] {
    const key = `${u.space} ${u.owner}`
    const prev = this.tombstones.get(key)
    if (prev == null || prev.seq < u.seq) {
      this.tombstones.delete(key)
      this.tombstones.set(key, { seq: u.seq, ts: u.ts, bytes: u.bytes })
      while (this.tombstones.size > this.limits.maxTombstones) this.tombstones.delete(this.tombstones.keys().next().value as string)
    }
    const held = this.bySpace.get(u.space)
    if (held == null || held.owner !== u.owner || held.seq > u.seq) return []
    this.remove(u.space)
    return [{ listing: held, reason: 'unlisted' }]
  }

  /** Drops listings not refreshed within `ttlMs` of `now`, and tombstones as old. */
  expire (now: number, ttlMs: number): Removal[] {
    const out: Removal[] = []
    for (const l of [...this.bySpace.values()]) {
      if (l.ts + ttlMs < now) {
        this.remove(l.space)
        out.push({ listing: l, reason: 'stale' })
      }
    }
    for (const [k, t] of this.tombstones) if (t.ts + ttlMs < now) this.tombstones.delete(k)
    return out
  }

  /** Every listing, best first; `present` may lower a listing's claim (our own count of a space we are in). */
  ranked (present?: (l: Listing) => number): Listing[] {
    const all = [...this.bySpace.values()]
    if (present == null) return all.sort(compareListings)
    const shown = all.map(l => ({ l, present: present(l), ts: l.ts, space: l.space }))
    return shown.sort(compareListings).map(x => x.l)
  }

  /** The unlistings we keep, newest last (handed to a peer that syncs with us, after the listings). */
  unlistings (): Uint8Array[] { return [...this.tombstones.values()].map(t => t.bytes) }

  /** Every listing, the owners held longest first (an owner's own listings most recently refreshed first). */
  byTenure (): Listing[] {
    const since = (l: Listing): number => this.since.get(l.owner) ?? 0
    return [...this.bySpace.values()].sort((a, b) => since(a) - since(b) || (a.owner < b.owner ? -1 : a.owner > b.owner ? 1 : 0) || b.ts - a.ts)
  }

  /**
   * The listing capacity would push out first: of the owner first seen most recently (not
   * `except`, never a vouched listing), that owner's least recently refreshed.
   */
  private newestArrival (except: string): Listing | undefined {
    let pick: Listing | undefined
    let pickSince = -Infinity
    for (const l of this.bySpace.values()) {
      if (l.owner === except || this.vouched.has(l.space)) continue
      const s = this.since.get(l.owner) as number
      if (pick == null || s > pickSince || (s === pickSince && (l.ts < pick.ts || (l.ts === pick.ts && l.space > pick.space)))) {
        pick = l
        pickSince = s
      }
    }
    return pick
  }

  private remove (space: string): void {
    const l = this.bySpace.get(space)
    if (l == null) return
    this.bySpace.delete(space)
    this.vouched.delete(space)
    const set = this.byOwner.get(l.owner)
    set?.delete(space)
    if (set?.size === 0) {
      this.byOwner.delete(l.owner)
      this.since.delete(l.owner)
    }
  }
}
