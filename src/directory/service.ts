/**
 * The directory service: spreads and keeps the listings of live public spaces, with no centre.
 *   - An owner's peer republishes its listings on DIRECTORY_TOPIC every refresh period, and at once
 *     (at most every MIN_REPUBLISH_MS) when the members present change.
 *   - Peers that hold listings provide DIRECTORY_KEY in the DHT; a newcomer finds them there, and
 *     syncs with a few peers it connects to over DIRECTORY_PROTOCOL (one request, the records back).
 *   - Every record is checked (listing.ts), kept in the book (book.ts: bounded per owner and in all,
 *     owners held longest kept first, dropped when stale, removed by the owner's unlisting) and
 *     never shown if its owner is blocked.
 *   - One source peer (a sync answer's, a gossip record's origin) may bring only so many owners new
 *     to us per window (budget.ts), so one spammer cannot fill the book.
 * Input a peer should not have sent goes to onRejected; every dropped record is counted by why.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { logger } from '@libp2p/logger'
import { TypedEventEmitter } from 'main-event'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import type { Ed25519Key } from '../identity/ed25519.ts'
import { sha256 } from '../identity/hash.ts'
import { readRecordSync } from '../identity/record.ts'
import { formatLink, MAX_LINK_ADDRESS_LENGTH, shareableAddresses } from '../net/links.ts'
import { PROTOCOL_MAX_INBOUND_STREAMS, PROTOCOL_MAX_OUTBOUND_STREAMS } from '../net/limits.ts'
import type { GossipMessage, GossipPort, GossipVerdict, ProtocolPort, RejectSink, RoutingPort } from '../net/ports.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import { deadline, request, serve } from '../net/rpc.ts'
import type { SocialView } from '../social/index.ts'
import { NotJoinedError } from '../space/errors.ts'
import type { BytesSublevel } from '../store/store.ts'
import { DirectoryBook, MAX_LISTINGS_PER_OWNER, type Removal } from './book.ts'
import { DirectoryRateLimitError, MAX_NEW_OWNERS_PER_PEER, MAX_SYNC_PEERS, NEW_OWNER_WINDOW_MS, NewOwnerBudget, rateLimitedVerdict, syncAnswer, SyncPeers, SyncReader } from './budget.ts'
import {
  checkListingFields, createListing, createUnlisting, InvalidListingError, LISTING_TYPE, MAX_LISTING_ADDRS, MAX_LISTING_BYTES, solveListingWork,
  verifyDirectoryRecord, type Listing, type ListingFields
} from './listing.ts'

const log = logger('peerverse:directory')

export const DIRECTORY_TOPIC = 'peerverse/directory/1'
export const DIRECTORY_PROTOCOL = '/peerverse/directory/1.0.0'
/** The well-known DHT key of peers that hold listings: the raw CID of this text. */
export const DIRECTORY_KEY_TEXT = 'peerverse/directory/1'
export const DIRECTORY_KEY = CID.createV1(raw.code, createDigest(sha256Hasher.code, sha256(DIRECTORY_KEY_TEXT)))
/** How often an owner's peer republishes its listings. */
export const DIRECTORY_REFRESH_MS = 60_000
/** A listing not refreshed within this long is dropped (three refreshes missed). */
export const LISTING_TTL_MS = 3 * DIRECTORY_REFRESH_MS
/** How often the service looks at the members present in its own spaces and expires stale listings. */
export const DIRECTORY_CHECK_MS = 1_000
/** An owner's listing is republished on a change of members present at most this often. */
export const MIN_REPUBLISH_MS = 2_000
/** Directory gossip messages one origin peer may send per second (token bucket) ... */
export const GOSSIP_RECORDS_PER_PEER_PER_SECOND = 2
/** ... with this burst (an owner's peer republishes at most MAX_LISTINGS_PER_OWNER at once). */
export const GOSSIP_RECORD_BURST = 16
/** Sync requests one peer may make of us per second ... */
export const SYNC_REQUESTS_PER_PEER_PER_SECOND = 0.1
/** ... with this burst. */
export const SYNC_REQUEST_BURST = 3
/** Peers whose rates we track at once. */
export const MAX_RATE_LIMITED_PEERS = 1024
/** Largest sync request. */
export const MAX_SYNC_REQUEST_BYTES = 64
export { MAX_SYNC_RECORDS, MAX_BAD_SYNC_RECORDS, MAX_SYNC_PEERS, DirectoryRateLimitError } from './budget.ts'
/** Time a DHT lookup of the directory key may take. */
export const DISCOVERY_TIMEOUT_MS = 20_000
/** Time one sync exchange may take. */
export const SYNC_TIMEOUT_MS = 20_000

export class TooManyListingsError extends Error { name = 'TooManyListingsError' }

/** What the directory reads of the space capability. */
export interface DirectorySpaces {
  /** The signed descriptor of a space we are in, or undefined. */
  descriptor: (id: string) => Uint8Array | undefined
  /** Members present in a space we are in (ourselves included), or undefined if we are not in it. */
  present: (id: string) => number | undefined
}

/** What the directory reads of the social capability (whether the user blocked an owner). */
export type DirectorySocial = SocialView

/** A listing as the API and the CLI show it. */
export interface ListingView {
  space: string
  name: string
  description: string
  tags: string[]
  thumbnail: string
  owner: string
  /** Members present (the owner's count, or ours if we are in the space and see fewer). */
  present: number
  /** When the owner last refreshed it (ms since the epoch). */
  updatedAt: number
  /** `pv:space=<id>&peer=...` with the owner peer's addresses. */
  link: string
}

export interface DirectoryEvents {
  'directory:listing': CustomEvent<ListingView>
  'directory:removed': CustomEvent<{ space: string, owner: string, reason: Removal['reason'] | 'blocked' }>
}

export interface DirectoryStatus {
  listings: number
  owners: number
  tombstones: number
  /** Our own listings. */
  published: string[]
  /** Records dropped, by why. */
  dropped: Record<string, number>
}

export interface DirectoryServiceInit {
  refreshMs: number
  ttlMs: number
}

export interface DirectoryServiceComponents {
  gossip: GossipPort
  protocols: ProtocolPort
  routing: RoutingPort
  onRejected: RejectSink
  did: string
  key: Ed25519Key
  store: BytesSublevel
  spaces: DirectorySpaces
  social: DirectorySocial
}

interface Own { fields: ListingFields, listing?: Listing, publishedAt: number, present: number }

/** Why a record was dropped, by its error's name. */
const DROP_REASON: Record<string, string> = {
  InvalidListingError: 'invalid',
  OversizedListingError: 'oversized',
  PrivateSpaceListingError: 'private',
  NotListingOwnerError: 'notOwner',
  ListingWorkError: 'work',
  StaleListingError: 'stale'
}

export class DirectoryService extends TypedEventEmitter<DirectoryEvents> {
  readonly did: string
  private readonly init: DirectoryServiceInit
  private readonly c: DirectoryServiceComponents
  readonly book = new DirectoryBook()
  private readonly own = new Map<string, Own>()
  private readonly dropped: Record<string, number> = {}
  private readonly gossipBuckets = new TokenBuckets(GOSSIP_RECORDS_PER_PEER_PER_SECOND, GOSSIP_RECORD_BURST, MAX_RATE_LIMITED_PEERS)
  private readonly syncBuckets = new TokenBuckets(SYNC_REQUESTS_PER_PEER_PER_SECOND, SYNC_REQUEST_BURST, MAX_RATE_LIMITED_PEERS)
  /** Peers we synced with, and when (at most MAX_SYNC_PEERS per refresh period). */
  private readonly synced: SyncPeers
  /** Owners new to us that each source peer brought lately. */
  private readonly newOwners = new NewOwnerBudget()
  private work?: Promise<Uint8Array>
  private lastSeq = 0
  private provided = false
  private started = false
  private controller?: AbortController
  private unsubscribe?: () => void
  private stopPeers?: () => void
  private timer?: ReturnType<typeof setInterval>
  private discoverTimer?: ReturnType<typeof setInterval>

  constructor (init: DirectoryServiceInit, components: DirectoryServiceComponents) {
    super()
    this.did = components.did
    this.init = init
    this.c = components
    this.synced = new SyncPeers(init.refreshMs)
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.controller = new AbortController()
    await this.c.protocols.handle(DIRECTORY_PROTOCOL, this.handler, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS,
      runOnLimitedConnection: true
    })
    // Where the gossip port can, each record is judged before it is forwarded, so junk stops at
    // the first honest peer; otherwise it is judged on delivery.
    const stopValidating = this.c.gossip.validate?.(DIRECTORY_TOPIC, m => this.onGossip(m))
    const stopHandling = this.c.gossip.subscribe(DIRECTORY_TOPIC, m => { if (stopValidating == null) this.onGossip(m) })
    this.unsubscribe = () => { stopHandling(); stopValidating?.() }
    this.stopPeers = this.c.protocols.onPeer('identify', (peer, protocols) => {
      if (protocols?.includes(DIRECTORY_PROTOCOL) === true) this.maybeSync(peer)
    })
    await this.loadOwn()
    this.timer = setInterval(() => { this.tick() }, DIRECTORY_CHECK_MS)
    this.timer.unref?.()
    this.discoverTimer = setInterval(() => { if (this.book.size === 0) void this.discover() }, this.init.refreshMs)
    this.discoverTimer.unref?.()
    void this.discover()
    for (const space of this.own.keys()) void this.republish(space).catch(err => { log('republish %s: %s', space, (err as Error).message) })
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.controller?.abort()
    clearInterval(this.timer)
    clearInterval(this.discoverTimer)
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.stopPeers?.()
    this.stopPeers = undefined
    await this.c.protocols.unhandle(DIRECTORY_PROTOCOL)
    if (this.provided) {
      this.provided = false
      await this.c.routing.cancelProvide(DIRECTORY_KEY).catch(() => {})
    }
  }

  // -- what an owner does ------------------------------------------------------------------------

  /** Lists one of our public spaces (we must be in it); republished until unpublish. */
  async publish (space: string, fields: Partial<ListingFields> = {}): Promise<ListingView> {
    const checked = checkListingFields(fields)
    if (this.c.spaces.descriptor(space) == null) throw new NotJoinedError(`not in space ${space}: create or join it first`)
    if (!this.own.has(space) && this.own.size >= MAX_LISTINGS_PER_OWNER) throw new TooManyListingsError(`an owner lists at most ${MAX_LISTINGS_PER_OWNER} spaces`)
    const prev = this.own.get(space)
    const own: Own = { fields: checked, publishedAt: 0, present: 0, listing: prev?.listing }
    const listing = await this.makeListing(space, own)
    this.own.set(space, own)
    await this.c.store.put(`own/${space}`, dagCbor.encode(checked), { sync: true } as Record<string, unknown>)
    await this.send(space, own, listing)
    return this.viewOf(listing)
  }

  /** Stops listing a space: a signed tombstone removes it everywhere at once. */
  async unpublish (space: string): Promise<void> {
    const work = await this.ownWork()
    const u = await createUnlisting(this.c.key, { space, seq: this.nextSeq(), ts: Date.now(), work })
    this.own.delete(space)
    await this.c.store.del(`own/${space}`, { sync: true } as Record<string, unknown>)
    this.emitRemovals(this.book.unlist(u))
    await this.c.gossip.publish(DIRECTORY_TOPIC, u.bytes).catch(err => { log('publish unlisting: %s', (err as Error).message) })
  }

  /** The spaces we list. */
  published (): string[] { return [...this.own.keys()] }

  // -- what a reader sees ------------------------------------------------------------------------

  /** Live listings, best first (members present), never a blocked owner's. */
  list (): ListingView[] {
    return this.book.ranked(l => this.presentOf(l))
      .filter(l => !this.c.social.isBlocked(l.owner))
      .map(l => this.viewOf(l))
  }

  status (): DirectoryStatus {
    return { listings: this.book.size, owners: this.book.owners, tombstones: this.book.tombstoneCount, published: this.published(), dropped: { ...this.dropped } }
  }

  /**
   * Takes one record from a peer (gossip or sync): kept; passed (valid, not for us to keep or
   * show, but for others to judge: a listing by an owner we blocked); dropped; or bad (the peer's fault).
   */
  take (bytes: Uint8Array, from: string, channel: string): 'kept' | 'passed' | 'dropped' | 'bad' {
    const now = Date.now()
    if (this.isKnown(bytes)) return 'dropped'
    let rec
    try {
      rec = verifyDirectoryRecord(bytes, now, this.init.ttlMs)
    } catch (err) {
      const e = err as Error
      const reason = DROP_REASON[e.name] ?? 'invalid'
      this.count(reason)
      // A record that merely aged on its way is no one's fault; the rest is.
      if (reason === 'stale') return 'dropped'
      this.c.onRejected(from, channel, e)
      return 'bad'
    }
    if (rec.kind === 'unlisting') {
      this.emitRemovals(this.book.unlist(rec.unlisting))
      return 'kept'
    }
    const l = rec.listing
    if (this.c.social.isBlocked(l.owner)) {
      this.count('blocked')
      return 'passed'
    }
    if (l.owner === this.did && !this.own.has(l.space)) {
      // An old listing of ours we since unlisted (or from before a reset): not ours to keep.
      this.count('unlisted')
      return 'dropped'
    }
    // A space we are in is one we count ourselves; any other owner new to us costs its source peer.
    const vouched = this.c.spaces.present(l.space) != null
    if (!vouched && !this.book.hasOwner(l.owner) && !this.newOwners.take(from, l.owner, now)) {
      this.count('newOwnerBudget')
      log('%s brought more than %d new owners in %d ms', from, MAX_NEW_OWNERS_PER_PEER, NEW_OWNER_WINDOW_MS)
      return 'dropped'
    }
    const { result, removed } = this.book.put(l, now, { vouched })
    this.emitRemovals(removed)
    if (result === 'added' || result === 'updated') {
      this.safeDispatchEvent('directory:listing', { detail: this.viewOf(l) })
      this.provide()
      return 'kept'
    }
    if (result === 'full' || result === 'unlisted') this.count(result)
    return 'dropped'
  }

  // -- spreading ---------------------------------------------------------------------------------

  /** A record on the topic: 'accept' forwards it, 'ignore' drops it, 'reject' drops it and marks the sender. */
  private onGossip (message: GossipMessage): GossipVerdict {
    const { from, data } = message
    if (!this.gossipBuckets.take(from)) {
      this.count('rateLimited')
      // Relayed: the relay is not at fault (it could not know the origin's rate), so ignore it.
      const verdict = rateLimitedVerdict(message)
      if (verdict === 'reject') this.c.onRejected(from, 'gossip:' + DIRECTORY_TOPIC, new DirectoryRateLimitError(`over ${GOSSIP_RECORDS_PER_PEER_PER_SECOND} directory records a second`))
      return verdict
    }
    const verdict = this.take(data, from, 'gossip:' + DIRECTORY_TOPIC)
    return verdict === 'kept' || verdict === 'passed' ? 'accept' : verdict === 'bad' ? 'reject' : 'ignore'
  }

  /** The sync protocol's server: one request, then our records (never a blocked owner's). */
  private readonly handler = serve({
    protocol: DIRECTORY_PROTOCOL,
    maxRequestBytes: MAX_SYNC_REQUEST_BYTES,
    onRejected: (peer, protocol, err) => { this.c.onRejected(peer, protocol, err) },
    isViolation: e => e.name === 'DirectoryRateLimitError' || e.name === 'InvalidListingError'
  }, async (req, { remote, signal, out }) => {
    if (!this.syncBuckets.take(remote.peer)) throw new DirectoryRateLimitError(`over ${SYNC_REQUESTS_PER_PEER_PER_SECOND} directory syncs a second`)
    let r: unknown
    try { r = dagCbor.decode(req) } catch { throw new InvalidListingError('a directory sync request is DAG-CBOR') }
    if (r == null || typeof r !== 'object' || (r as { v?: unknown }).v !== 1) throw new InvalidListingError('a directory sync request is { v: 1 }')
    const records = syncAnswer(this.book, owner => this.c.social.isBlocked(owner))
    for (let i = 0; i < records.length; i += 64) await out.writeMany(records.slice(i, i + 64), { signal })
  })

  /** Asks `peer` for its records and takes each. */
  async syncWith (peer: string, options: { signal?: AbortSignal } = {}): Promise<number> {
    this.synced.note(peer, Date.now())
    const reader = new SyncReader()
    let kept = 0
    await request(this.c.protocols, peer, DIRECTORY_PROTOCOL, dagCbor.encode({ v: 1 }), async frame => {
      const verdict = this.take(frame, peer, DIRECTORY_PROTOCOL)
      if (verdict === 'kept') kept++
      const more = reader.next(verdict === 'bad')
      if (reader.records % 64 === 0) await new Promise(resolve => setTimeout(resolve, 0))
      return more
    }, { maxFrameBytes: MAX_LISTING_BYTES, timeoutMs: SYNC_TIMEOUT_MS, signal: deadline(SYNC_TIMEOUT_MS, options.signal ?? this.controller?.signal), runOnLimitedConnection: true })
    return kept
  }

  /** Syncs with a peer we just met, unless we synced with enough peers lately. */
  private maybeSync (peer: string): void {
    if (!this.started) return
    if (!this.synced.may(peer, Date.now())) return
    void this.syncWith(peer).catch(err => { log('sync with %s: %s', peer, (err as Error).message) })
  }

  /** Finds peers that provide the directory key and syncs with a few. */
  private async discover (): Promise<void> {
    if (!this.started) return
    const signal = deadline(DISCOVERY_TIMEOUT_MS, this.controller?.signal)
    let asked = 0
    try {
      for await (const p of this.c.routing.findProviders(DIRECTORY_KEY, { signal })) {
        if (p.peer === this.c.protocols.peerId) continue
        if (this.synced.has(p.peer)) continue
        asked++
        await this.syncWith(p.peer, { signal }).catch(err => { log('sync with provider %s: %s', p.peer, (err as Error).message) })
        if (asked >= MAX_SYNC_PEERS) break
      }
    } catch (err) {
      log('directory providers: %s', (err as Error).message)
    }
  }

  /** Announces in the DHT that we hold listings (once per start). */
  private provide (): void {
    if (this.provided || !this.started) return
    this.provided = true
    void this.c.routing.provide(DIRECTORY_KEY, { signal: this.controller?.signal }).catch(err => { log('provide directory key: %s', (err as Error).message) })
  }

  // -- our own listings --------------------------------------------------------------------------

  private async loadOwn (): Promise<void> {
    for await (const [k, v] of this.c.store.iterator({ gte: 'own/', lt: 'own0' })) {
      try {
        this.own.set(k.slice(4), { fields: checkListingFields(dagCbor.decode(v)), publishedAt: 0, present: 0 })
      } catch (err) {
        log.error('stored listing %s: %s', k, (err as Error).message)
      }
    }
  }

  /** Our proof of work: stored, or solved once (concurrent callers share the one solve). */
  private async ownWork (): Promise<Uint8Array> {
    this.work ??= (async () => {
      const stored = await this.c.store.get('work')
      if (stored != null) return stored
      const work = await solveListingWork(this.did, { signal: this.controller?.signal })
      await this.c.store.put('work', work, { sync: true } as Record<string, unknown>)
      return work
    })()
    try {
      return await this.work
    } catch (err) {
      this.work = undefined
      throw err
    }
  }

  private nextSeq (): number {
    this.lastSeq = Math.max(this.lastSeq + 1, Date.now())
    return this.lastSeq
  }

  private async makeListing (space: string, own: Own): Promise<Listing> {
    const descriptor = this.c.spaces.descriptor(space)
    if (descriptor == null) throw new NotJoinedError(`not in space ${space}`)
    const addrs = shareableAddresses(this.c.protocols.addresses(), this.c.protocols.peerId, MAX_LISTING_ADDRS * 2)
      .filter(a => a.length <= MAX_LINK_ADDRESS_LENGTH).slice(0, MAX_LISTING_ADDRS)
    own.present = this.c.spaces.present(space) ?? 0
    return await createListing(this.c.key, this.did, {
      ...own.fields, descriptor, present: own.present, addrs, seq: this.nextSeq(), ts: Date.now(), work: await this.ownWork()
    })
  }

  private async send (space: string, own: Own, listing: Listing): Promise<void> {
    own.listing = listing
    own.publishedAt = Date.now()
    const { removed } = this.book.put(listing, Date.now(), { vouched: true })
    this.emitRemovals(removed)
    this.safeDispatchEvent('directory:listing', { detail: this.viewOf(listing) })
    this.provide()
    await this.c.gossip.publish(DIRECTORY_TOPIC, listing.bytes).catch(err => { log('publish listing %s: %s', space, (err as Error).message) })
  }

  private async republish (space: string): Promise<void> {
    const own = this.own.get(space)
    if (own == null || !this.started) return
    await this.send(space, own, await this.makeListing(space, own))
  }

  /** Republishes what is due (refresh, or a change of members present), and expires stale listings. */
  private tick (): void {
    const now = Date.now()
    for (const [space, own] of this.own) {
      const present = this.c.spaces.present(space)
      if (present == null) continue
      const due = now - own.publishedAt >= this.init.refreshMs || (present !== own.present && now - own.publishedAt >= MIN_REPUBLISH_MS)
      if (due) {
        own.publishedAt = now
        void this.republish(space).catch(err => { log('republish %s: %s', space, (err as Error).message) })
      }
    }
    this.emitRemovals(this.book.expire(now, this.init.ttlMs))
  }

  // -- views -------------------------------------------------------------------------------------

  private presentOf (l: Listing): number {
    const ours = this.c.spaces.present(l.space)
    return ours == null ? l.present : Math.min(l.present, ours)
  }

  viewOf (l: Listing): ListingView {
    let link: string
    try {
      link = formatLink({ kind: 'space', target: l.space, peers: l.addrs })
    } catch {
      link = formatLink({ kind: 'space', target: l.space, peers: [] })
    }
    return { space: l.space, name: l.name, description: l.description, tags: l.tags, thumbnail: l.thumbnail, owner: l.owner, present: this.presentOf(l), updatedAt: l.ts, link }
  }

  private emitRemovals (removed: Removal[]): void {
    for (const r of removed) {
      if (r.reason === 'evicted') this.count('evicted')
      this.safeDispatchEvent('directory:removed', { detail: { space: r.listing.space, owner: r.listing.owner, reason: r.reason } })
    }
  }

  /** Whether the bytes are a listing no newer than one we hold (cheap: no signature checked). */
  private isKnown (bytes: Uint8Array): boolean {
    try {
      const r = readRecordSync(bytes, { maxBytes: MAX_LISTING_BYTES })
      if (r.record.type !== LISTING_TYPE) return false
      const p = r.record.payload as { space?: unknown, seq?: unknown }
      return typeof p.space === 'string' && typeof p.seq === 'number' && this.book.isKnown(p.space, r.record.author, p.seq)
    } catch {
      return false
    }
  }

  private count (reason: string): void { this.dropped[reason] = (this.dropped[reason] ?? 0) + 1 }
}

