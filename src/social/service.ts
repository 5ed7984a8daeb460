/**
 * The social capability: our own feed, the feeds we replicate, and the timeline.
 *
 * Replication is pull (Secure Scuttlebutt's way): on every new connection and on a schedule we
 * ask a peer for its heads of the feeds we replicate, then fetch what we lack in batches over
 * `/peerverse/feeds/1.0.0`, verifying each entry's signature and link before storing it. Any
 * peer that holds a feed can serve it, so an author's posts reach followers while the author is
 * offline. Live delivery is push: each author publishes new entries on a gossip topic of their
 * own, which followers subscribe to; a gap seen there triggers a pull.
 *
 * We replicate the authors we follow and, up to MAX_STRANGER_FEEDS, the authors they follow.
 * Blocked authors are neither stored nor served; muted ones are stored but left out of the
 * timeline. Two entries of one author with the same seq are a fork: the evidence is kept, the
 * author is flagged, and nothing of that feed past the fork is accepted or served.
 */
import * as dagCbor from '@ipld/dag-cbor'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import type { CID } from 'multiformats/cid'
import { isDid } from '../identity/did.ts'
import type { Ed25519Key } from '../identity/ed25519.ts'
import type { Network } from '../net/network.ts'
import { PROTOCOL_MAX_INBOUND_STREAMS, PROTOCOL_MAX_OUTBOUND_STREAMS, PROTOCOL_TIMEOUT_MS } from '../net/limits.ts'
import {
  checkAppend, createEntry, decodeEntry, ForkedFeedError, InvalidEntryError, MAX_ENTRY_BYTES, SequenceGapError,
  type Entry, type EntryBody, type EntryKind, type FeedHead, type PostBody, type ProfileBody, type ReplyBody
} from './feed.ts'
import { FeedStore, type ForkEvidence } from './store.ts'
import { KeyedLock } from '../store/keyed-lock.ts'
import { TokenBuckets } from '../net/rate-limit.ts'

const log = logger('peerverse:social')

export const FEEDS_PROTOCOL = '/peerverse/feeds/1.0.0'
/** Entries in one replication answer. */
export const MAX_BATCH_ENTRIES = 256
/** Feeds named in one heads request. */
export const MAX_HEADS_PER_REQUEST = 1024
/** Largest replication request. */
export const MAX_REQUEST_BYTES = 96 * 1024
/** Replication requests a peer may make of us per second (token bucket) ... */
export const REQUESTS_PER_PEER_PER_SECOND = 20
/** ... with this burst. */
export const REQUEST_BURST = 64
/** Feeds of authors we do not follow (followed by those we follow) that we replicate at most. */
export const MAX_STRANGER_FEEDS = 256
/** How often we pull from connected peers. */
export const SYNC_INTERVAL_MS = 15_000
/** Peers one scheduled round pulls from. */
export const MAX_SYNC_PEERS_PER_ROUND = 6
/** Entries a timeline page holds at most. */
export const MAX_TIMELINE_LIMIT = 200

export class ReplicationRateLimitError extends Error {
  name = 'ReplicationRateLimitError'
}

export class InvalidRequestError extends Error {
  name = 'InvalidRequestError'
}

export class BlockedAuthorError extends Error {
  name = 'BlockedAuthorError'
}

/** The topic an author's new entries are pushed on. */
export function feedTopic (did: string): string {
  return `peerverse/feed/1/${did}`
}

export interface SocialEvents {
  /** A new entry was stored (ours or a replicated one). */
  onEntry?: (entry: Entry) => void
  /** A fork was detected. */
  onFork?: (evidence: ForkEvidence) => void
  onRejected?: (peerId: string, protocol: string, error: Error) => void
}

export interface SocialComponents {
  net: Network
  store: FeedStore
  key: Ed25519Key
  did: string
  events?: SocialEvents
  /** Publishes on a gossip topic (the node's, with its size checks). */
  publish: (topic: string, data: Uint8Array) => Promise<number>
  subscribe: (topic: string) => void
  unsubscribe: (topic: string) => void
}

export interface TimelineEntry {
  id: string
  author: string
  name?: string
  seq: number
  ts: number
  kind: EntryKind
  text?: string
  to?: string
  attachments?: string[]
  likes: number
  cursor: string
}

type Request = { op: 'heads', dids: string[] } | { op: 'entries', did: string, from: number, limit: number }

export class SocialService {
  readonly store: FeedStore
  private readonly net: Network
  private readonly key: Ed25519Key
  readonly did: string
  private readonly events: SocialEvents
  private readonly c: SocialComponents
  private readonly locks = new KeyedLock()
  /** Requests peers make of us, per peer (REQUESTS_PER_PEER_PER_SECOND, REQUEST_BURST). */
  private readonly buckets = new TokenBuckets(REQUESTS_PER_PEER_PER_SECOND, REQUEST_BURST, 1024)
  private readonly syncing = new Map<string, Promise<number>>()
  /** Our own requests, per peer: the server's limits with a margin. */
  private readonly outgoing = new TokenBuckets(REQUESTS_PER_PEER_PER_SECOND * 0.8, Math.floor(REQUEST_BURST / 2), 1024)
  private follows = new Set<string>()
  private replicate = new Set<string>()
  private muted = new Set<string>()
  private blocked = new Set<string>()
  private forked = new Set<string>()
  private timer?: ReturnType<typeof setInterval>
  private started = false
  private readonly onIdentify = (evt: CustomEvent<{ peerId: PeerId, protocols: string[] }>): void => {
    if (evt.detail.protocols.includes(FEEDS_PROTOCOL)) void this.syncWith(evt.detail.peerId).catch(() => {})
  }

  constructor (components: SocialComponents) {
    this.c = components
    this.net = components.net
    this.store = components.store
    this.key = components.key
    this.did = components.did
    this.events = components.events ?? {}
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.muted = await this.store.listed('mute')
    this.blocked = await this.store.listed('block')
    this.forked = new Set((await this.store.forks()).map(f => f.author))
    await this.refreshFollows()
    await this.net.handle(FEEDS_PROTOCOL, (stream, connection) => { void this.serve(stream, connection) }, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS,
      runOnLimitedConnection: true
    })
    this.net.addEventListener('peer:identify', this.onIdentify as EventListener)
    this.timer = setInterval(() => { void this.syncRound() }, SYNC_INTERVAL_MS)
    this.timer.unref?.()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    clearInterval(this.timer)
    this.net.removeEventListener('peer:identify', this.onIdentify as EventListener)
    await this.net.unhandle(FEEDS_PROTOCOL)
  }

  /** Runs `fn` alone for one author, so appends to a feed never interleave. */
  private async locked<T> (did: string, fn: () => Promise<T>): Promise<T> {
    return await this.locks.run(did, fn)
  }

  /** Recomputes whom we follow and replicate; runs one at a time, so a stale result never wins. */
  private async refreshFollows (): Promise<void> {
    await this.locked('\0follows', async () => { await this.computeFollows() })
  }

  /** Whom we follow (our feed) and replicate (them and, capped, whom they follow). */
  private async computeFollows (): Promise<void> {
    const follows = await this.store.follows(this.did)
    const replicate = new Set<string>([this.did, ...follows])
    let strangers = 0
    for (const f of follows) {
      for (const g of await this.store.follows(f)) {
        if (replicate.has(g) || this.blocked.has(g)) continue
        if (strangers >= MAX_STRANGER_FEEDS) break
        replicate.add(g)
        strangers++
      }
    }
    for (const b of this.blocked) replicate.delete(b)
    for (const old of this.follows) if (!follows.has(old) && old !== this.did) this.c.unsubscribe(feedTopic(old))
    for (const f of follows) if (!this.blocked.has(f)) this.c.subscribe(feedTopic(f))
    this.follows = follows
    this.replicate = replicate
  }

  // -- our own feed --------------------------------------------------------------------------

  /** Appends an entry to our feed (durably), then pushes it to followers. */
  async append (kind: EntryKind, body: EntryBody): Promise<Entry> {
    const entry = await this.locked(this.did, async () => {
      const head = await this.store.head(this.did)
      const e = await createEntry(this.key, head, kind, body, Date.now())
      await this.store.append(e, { sync: true })
      return e
    })
    if (kind === 'follow' || kind === 'unfollow') await this.refreshFollows()
    this.events.onEntry?.(entry)
    void this.c.publish(feedTopic(this.did), entry.bytes).catch(() => {})
    return entry
  }

  async post (text: string, attachments?: CID[]): Promise<Entry> {
    return await this.append('post', { text, attachments } satisfies PostBody)
  }

  async reply (to: CID, text: string, attachments?: CID[]): Promise<Entry> {
    return await this.append('reply', { text, to, attachments } satisfies ReplyBody)
  }

  async like (of: CID): Promise<Entry> { return await this.append('like', { of }) }

  async remove (of: CID): Promise<Entry> {
    const at = await this.store.locate(of)
    if (at?.author !== this.did) throw new InvalidEntryError('only your own entries can be deleted')
    return await this.append('delete', { of })
  }

  async follow (did: string): Promise<Entry> {
    if (!isDid(did)) throw new InvalidEntryError(`not a did:key: ${did}`)
    if (did === this.did) throw new InvalidEntryError('you cannot follow yourself')
    const entry = await this.append('follow', { did })
    void this.syncRound().catch(() => {})
    return entry
  }

  async unfollow (did: string): Promise<Entry> {
    if (!isDid(did)) throw new InvalidEntryError(`not a did:key: ${did}`)
    return await this.append('unfollow', { did })
  }

  async setProfile (profile: ProfileBody): Promise<Entry> {
    return await this.append('profile', profile)
  }

  // -- reading ------------------------------------------------------------------------------

  following (): string[] { return [...this.follows] }

  async profile (did: string): Promise<ProfileBody & { did: string, entries: number, forked: boolean }> {
    const head = await this.store.head(did)
    const profile = await this.store.profile(did)
    return { did, ...profile, entries: head?.seq ?? 0, forked: this.forked.has(did) }
  }

  /** Entries of one author from `from`. */
  async entries (did: string, options: { from?: number, limit?: number } = {}): Promise<Entry[]> {
    const limit = Math.min(options.limit ?? 50, MAX_TIMELINE_LIMIT)
    return await Promise.all((await this.store.range(did, options.from ?? 1, limit)).map(decodeEntry))
  }

  /** Posts and replies of the authors we follow and ours, newest first. */
  async timeline (options: { limit?: number, before?: string } = {}): Promise<TimelineEntry[]> {
    const limit = Math.max(1, Math.min(options.limit ?? 20, MAX_TIMELINE_LIMIT))
    const include = (a: string): boolean => (a === this.did || this.follows.has(a)) && !this.muted.has(a) && !this.blocked.has(a)
    const out: TimelineEntry[] = []
    const names = new Map<string, string | undefined>()
    for await (const item of this.store.timeline({ before: options.before, include })) {
      const e = await this.store.get(item.author, item.seq)
      if (e == null || await this.store.isDeleted(e.id)) continue
      if (!names.has(item.author)) names.set(item.author, (await this.store.profile(item.author)).name)
      const body = e.payload.body as Partial<ReplyBody>
      out.push({
        id: e.id.toString(),
        author: e.author,
        name: names.get(item.author),
        seq: e.payload.seq,
        ts: e.payload.ts,
        kind: e.payload.kind,
        text: body.text,
        to: body.to?.toString(),
        attachments: body.attachments?.map(a => a.toString()),
        likes: await this.store.likes(e.id),
        cursor: item.cursor
      })
      if (out.length >= limit) break
    }
    return out
  }

  async setMuted (did: string, on: boolean): Promise<void> {
    if (!isDid(did)) throw new InvalidEntryError(`not a did:key: ${did}`)
    await this.store.setListed('mute', did, on)
    if (on) this.muted.add(did); else this.muted.delete(did)
  }

  async setBlocked (did: string, on: boolean): Promise<void> {
    if (!isDid(did)) throw new InvalidEntryError(`not a did:key: ${did}`)
    await this.store.setListed('block', did, on)
    if (on) {
      this.blocked.add(did)
      await this.locked(did, async () => { await this.store.dropFeed(did) })
    } else {
      this.blocked.delete(did)
    }
    await this.refreshFollows()
  }

  /** Whether an author is blocked here (spaces' chat asks this too). */
  isBlocked (did: string): boolean { return this.blocked.has(did) }
  isMuted (did: string): boolean { return this.muted.has(did) }
  lists (): { muted: string[], blocked: string[], forked: string[] } {
    return { muted: [...this.muted], blocked: [...this.blocked], forked: [...this.forked] }
  }

  // -- ingesting entries from peers ---------------------------------------------------------

  /**
   * Verifies an entry from a peer and appends it when it is its author's next. Returns 'stored',
   * 'duplicate' or 'ignored' (blocked, forked, not replicated); throws SequenceGapError for an
   * entry past our head (the caller pulls the gap), ForkedFeedError for a fork, and the
   * verification errors for a bad entry.
   */
  async ingest (bytes: Uint8Array, options: { author?: string } = {}): Promise<'stored' | 'duplicate' | 'ignored'> {
    return await this.ingestEntry(await decodeEntry(bytes), options)
  }

  /** ingest() for an entry already decoded and verified (decodeEntry). */
  async ingestEntry (entry: Entry, options: { author?: string } = {}): Promise<'stored' | 'duplicate' | 'ignored'> {
    const author = entry.author
    if (options.author != null && author !== options.author) throw new InvalidEntryError(`expected an entry of ${options.author}, got one of ${author}`)
    if (!this.replicate.has(author) || this.blocked.has(author) || this.forked.has(author) || author === this.did) return 'ignored'
    const result = await this.locked(author, async () => {
      const head = await this.store.head(author)
      if (head != null && entry.payload.seq <= head.seq) {
        const held = await this.store.get(author, entry.payload.seq)
        if (held != null && held.id.equals(entry.id)) return 'duplicate' as const
        const evidence: ForkEvidence = {
          author,
          seq: entry.payload.seq,
          held: Buffer.from(held?.bytes ?? new Uint8Array(0)).toString('base64'),
          other: Buffer.from(entry.bytes).toString('base64'),
          at: Date.now()
        }
        await this.store.recordFork(evidence)
        this.forked.add(author)
        this.events.onFork?.(evidence)
        throw new ForkedFeedError(`${author} signed two entries at seq ${entry.payload.seq}`)
      }
      checkAppend(head, entry, Date.now())
      await this.store.append(entry)
      return 'stored' as const
    })
    if (result === 'stored') {
      this.events.onEntry?.(entry)
      if (entry.payload.kind === 'follow' || entry.payload.kind === 'unfollow') {
        if (this.follows.has(author)) void this.refreshFollows().catch(() => {})
      }
    }
    return result
  }

  /** A gossip message on a feed topic. Returns whether it was stored. */
  async onGossip (topic: string, from: string, data: Uint8Array): Promise<void> {
    if (!topic.startsWith('peerverse/feed/1/') || data.length > MAX_ENTRY_BYTES) return
    try {
      const result = await this.ingest(data, { author: topic.slice('peerverse/feed/1/'.length) })
      log('gossip entry on %s: %s', topic, result)
    } catch (err) {
      if (err instanceof SequenceGapError) {
        // We missed some: pull from the peer that published it, or anyone.
        let peer: PeerId | undefined
        try { peer = peerIdFromString(from) } catch {}
        if (peer != null && this.net.getConnections(peer).length > 0) void this.syncWith(peer).catch(() => {})
        else void this.syncRound().catch(() => {})
        return
      }
      if (!(err instanceof ForkedFeedError)) this.events.onRejected?.(from, 'gossip:' + topic, err as Error)
    }
  }

  // -- replication: the puller --------------------------------------------------------------

  private async syncRound (): Promise<void> {
    const peers = this.net.getPeers()
    for (let i = peers.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [peers[i], peers[j]] = [peers[j], peers[i]]
    }
    for (const peer of peers.slice(0, MAX_SYNC_PEERS_PER_ROUND)) await this.syncWith(peer).catch(() => {})
  }

  private async request (peer: PeerId, req: Request, onFrame: (bytes: Uint8Array) => Promise<boolean>): Promise<void> {
    const signal = AbortSignal.timeout(PROTOCOL_TIMEOUT_MS * 2)
    const stream = await this.net.dialProtocol(peer, FEEDS_PROTOCOL, { signal, runOnLimitedConnection: true })
    const lp = lpStream(stream, { maxDataLength: Math.max(MAX_ENTRY_BYTES, MAX_REQUEST_BYTES) })
    try {
      await lp.write(dagCbor.encode(req), { signal })
      while (true) {
        let frame: Uint8Array
        try {
          frame = (await lp.read({ signal })).subarray()
        } catch (err) {
          if ((err as Error).name === 'UnexpectedEOFError') break
          throw err
        }
        if (!await onFrame(frame)) break
      }
      await stream.close().catch(() => {})
    } catch (err) {
      stream.abort(err as Error)
      throw err
    }
  }

  /** The authors whose feeds we replicate. */
  replicating (): string[] { return [...this.replicate] }

  /** Waits for our own request budget with a peer (the server's limits, with a margin). */
  private async pace (peer: string): Promise<void> {
    while (!this.outgoing.take(peer)) await new Promise(resolve => setTimeout(resolve, this.outgoing.wait(peer)))
  }

  /** Pulls everything a peer holds beyond our heads, for the feeds we replicate. */
  async syncWith (peer: PeerId): Promise<number> {
    const key = peer.toString()
    const running = this.syncing.get(key)
    if (running != null) return await running
    if (!this.started) return 0
    const run = this.pull(peer).finally(() => { this.syncing.delete(key) })
    this.syncing.set(key, run)
    return await run
  }

  private async pull (peer: PeerId): Promise<number> {
    const key = peer.toString()
    let stored = 0
    {
      const wanted = [...this.replicate].filter(d => !this.forked.has(d) && d !== this.did).slice(0, MAX_HEADS_PER_REQUEST)
      if (wanted.length === 0) return 0
      let heads: Record<string, number> = {}
      await this.pace(key)
      await this.request(peer, { op: 'heads', dids: wanted }, async frame => {
        const value = dagCbor.decode(frame) as { heads?: unknown }
        if (value?.heads == null || typeof value.heads !== 'object') throw new InvalidRequestError('malformed heads answer')
        heads = value.heads as Record<string, number>
        return false
      })
      for (const did of wanted) {
        const theirs = heads[did]
        if (typeof theirs !== 'number' || !Number.isSafeInteger(theirs)) continue
        while (true) {
          const ours = (await this.store.head(did))?.seq ?? 0
          if (theirs <= ours || this.forked.has(did) || this.blocked.has(did) || !this.replicate.has(did)) break
          const from = ours + 1
          const limit = Math.min(MAX_BATCH_ENTRIES, theirs - ours)
          let got = 0
          let progressed = 0
          let failed = false
          await this.pace(key)
          try {
            await this.request(peer, { op: 'entries', did, from, limit }, async frame => {
              got++
              try {
                const entry = await decodeEntry(frame)
                if (entry.author !== did) throw new InvalidEntryError(`asked for ${did}, got an entry of ${entry.author}`)
                if (entry.payload.seq !== from + got - 1) throw new SequenceGapError(`asked for entry ${from + got - 1} of ${did}, got ${entry.payload.seq}`)
                if (await this.ingestEntry(entry) === 'stored') { stored++; progressed++ }
              } catch (err) {
                failed = true
                if (!(err instanceof ForkedFeedError)) this.events.onRejected?.(key, FEEDS_PROTOCOL, err as Error)
                return false
              }
              return got < limit
            })
          } catch (err) {
            log('pulling %s from %s failed: %s', did, key, (err as Error).message)
            break
          }
          // A short, failed or fruitless batch ends this feed for this round.
          if (failed || got < limit || progressed === 0) break
        }
      }
    }
    return stored
  }

  // -- replication: the server --------------------------------------------------------------

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
    const signal = AbortSignal.timeout(PROTOCOL_TIMEOUT_MS * 2)
    const lp = lpStream(stream, { maxDataLength: MAX_REQUEST_BYTES })
    try {
      if (!this.buckets.take(peer)) throw new ReplicationRateLimitError(`more than ${REQUESTS_PER_PEER_PER_SECOND} requests per second`)
      const req = parseRequest((await lp.read({ signal })).subarray())
      if (req.op === 'heads') {
        const heads: Record<string, number> = {}
        for (const did of req.dids) {
          if (this.blocked.has(did) || !isDid(did)) continue
          const head = await this.headToServe(did)
          if (head != null) heads[did] = head.seq
        }
        await lp.write(dagCbor.encode({ heads }), { signal })
      } else if (!this.blocked.has(req.did)) {
        const head = await this.headToServe(req.did)
        const last = Math.min(head?.seq ?? 0, req.from + req.limit - 1)
        for (let from = req.from; from <= last; from += 64) {
          // One write per range: still one length-prefixed frame per entry, fewer socket writes.
          const range = await this.store.range(req.did, from, Math.min(64, last - from + 1))
          if (range.length > 0) await lp.writeV(range, { signal })
        }
      }
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err as Error)
      const e = err as Error
      if (e instanceof InvalidRequestError || e instanceof ReplicationRateLimitError || e.name === 'InvalidDataLengthError' || e.name === 'InvalidDataLengthLengthError') {
        this.events.onRejected?.(peer, FEEDS_PROTOCOL, e)
      }
    }
  }

  /** Our head of a feed as we serve it: a forked feed is served only up to before the fork. */
  private async headToServe (did: string): Promise<FeedHead | null> {
    const head = await this.store.head(did)
    if (head == null || !this.forked.has(did)) return head
    const fork = await this.store.fork(did)
    const seq = Math.min(head.seq, (fork?.seq ?? 1) - 1)
    if (seq < 1) return null
    const e = await this.store.get(did, seq)
    return e == null ? null : { seq, id: e.id, ts: e.payload.ts }
  }
}

/** Decodes a replication request; InvalidRequestError otherwise. */
export function parseRequest (bytes: Uint8Array): Request {
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch {
    throw new InvalidRequestError('request is not DAG-CBOR')
  }
  const v = value as Record<string, unknown>
  if (v == null || typeof v !== 'object') throw new InvalidRequestError('request must be a map')
  if (v.op === 'heads') {
    if (!Array.isArray(v.dids) || v.dids.length > MAX_HEADS_PER_REQUEST || !v.dids.every(d => typeof d === 'string' && d.length < 128)) {
      throw new InvalidRequestError(`dids must be a list of at most ${MAX_HEADS_PER_REQUEST} did strings`)
    }
    return { op: 'heads', dids: v.dids as string[] }
  }
  if (v.op === 'entries') {
    if (typeof v.did !== 'string' || v.did.length > 128) throw new InvalidRequestError('did must be a string')
    if (typeof v.from !== 'number' || !Number.isSafeInteger(v.from) || v.from < 1) throw new InvalidRequestError('from must be a positive integer')
    if (typeof v.limit !== 'number' || !Number.isSafeInteger(v.limit) || v.limit < 1 || v.limit > MAX_BATCH_ENTRIES) {
      throw new InvalidRequestError(`limit must be 1..${MAX_BATCH_ENTRIES}`)
    }
    return { op: 'entries', did: v.did, from: v.from, limit: v.limit }
  }
  throw new InvalidRequestError(`unknown op ${String(v.op)}`)
}
