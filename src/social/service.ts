/**
 * The social capability: our own feed, the feeds we replicate, and the timeline.
 *
 * Replication is pull (Secure Scuttlebutt's way): on every new connection and on a schedule we
 * ask a peer for its heads of the feeds we replicate, then fetch what we lack in batches over
 * `/peerverse/feeds/1.0.0` (replication.ts), verifying each entry's signature and link before storing it. Any
 * peer that holds a feed can serve it, so an author's posts reach followers while the author is
 * offline. Live delivery is push: each author publishes new entries on a gossip topic of their
 * own, which followers subscribe to; a gap seen there triggers a pull.
 *
 * We replicate the authors we follow and, up to MAX_STRANGER_FEEDS, the authors they follow.
 * Blocked authors are neither stored nor served; muted ones are stored but left out of the
 * timeline. Two entries of one author with the same seq are a fork: the evidence is kept, the
 * author is flagged, and nothing of that feed past the fork is accepted or served.
 *
 * Replies and likes to an author who does not replicate our feed reach them as notices to their
 * inbox (inbox.ts); the ones we accept are kept apart from the feeds and threaded into our timeline.
 *
 * The service reaches the network only through its ports (gossip for live delivery, protocols for
 * replication and identify, routing to find inboxes), subscribes its own topics, and emits
 * `feed:entry`, `feed:fork` and `feed:notice`.
 */
import { logger } from '@libp2p/logger'
import { TypedEventEmitter } from 'main-event'
import type { CID } from 'multiformats/cid'
import { isDid } from '../identity/did.ts'
import type { Ed25519Key } from '../identity/ed25519.ts'
import { base64 } from '../identity/hash.ts'
import { PROTOCOL_MAX_INBOUND_STREAMS, PROTOCOL_MAX_OUTBOUND_STREAMS } from '../net/limits.ts'
import type { GossipPort, ProtocolPort, RejectSink, RoutingPort } from '../net/ports.ts'
import {
  checkAppend, createEntry, decodeEntry, ForkedFeedError, InvalidEntryError, MAX_ENTRY_BYTES, SequenceGapError,
  type Entry, type EntryBody, type EntryKind, type LikeBody, type PostBody, type ProfileBody, type ReplyBody
} from './feed.ts'
import { Inbox, InboxUnreachableError } from './inbox.ts'
import { FEEDS_PROTOCOL, Replication } from './replication.ts'
import type { FeedStore, ForkEvidence } from './store.ts'
import { isStoreWriteError } from '../store/errors.ts'
import { KeyedLock } from '../store/keyed-lock.ts'

export {
  FEEDS_PROTOCOL, InvalidRequestError, MAX_BATCH_ENTRIES, MAX_HEADS_PER_REQUEST, MAX_REQUEST_BYTES, parseRequest,
  ReplicationRateLimitError, REQUEST_BURST, REQUESTS_PER_PEER_PER_SECOND
} from './replication.ts'

const log = logger('peerverse:social')

/** Feeds of authors we do not follow (followed by those we follow) that we replicate at most. */
export const MAX_STRANGER_FEEDS = 256
/** How often we pull from connected peers. */
export const SYNC_INTERVAL_MS = 15_000
/** Peers one scheduled round pulls from. */
export const MAX_SYNC_PEERS_PER_ROUND = 6
/** Entries a timeline page holds at most. */
export const MAX_TIMELINE_LIMIT = 200
/** Prefix of the topics authors push their new entries on. */
export const FEED_TOPIC_PREFIX = 'peerverse/feed/1/'

export class BlockedAuthorError extends Error {
  name = 'BlockedAuthorError'
}

/** The topic an author's new entries are pushed on. */
export function feedTopic (did: string): string {
  return FEED_TOPIC_PREFIX + did
}

/** A new entry was stored (ours or a replicated one). */
export interface FeedEntryEvent {
  author: string
  seq: number
  id: string
  kind: string
  ts: number
  text?: string
}

/** Two entries of one author with the same seq were seen. */
export interface FeedForkEvent {
  author: string
  seq: number
}

/** What became of the notice of our reply or like sent to the author of its target. */
export interface FeedNoticeEvent {
  /** The author notified. */
  to: string
  /** Our entry. */
  id: string
  kind: string
  /** The author's verdict ('stored', 'duplicate', 'ignored'), or the name of the error. */
  result: string
}

export interface SocialEvents {
  'feed:entry': CustomEvent<FeedEntryEvent>
  'feed:fork': CustomEvent<FeedForkEvent>
  'feed:notice': CustomEvent<FeedNoticeEvent>
}

/** The events social emits, as the API's event stream names them. */
export const SOCIAL_EVENTS = ['feed:entry', 'feed:fork', 'feed:notice'] as const

export interface SocialInit {
  /** How often we pull from connected peers (default SYNC_INTERVAL_MS). */
  syncIntervalMs?: number
  /** Peers one scheduled round pulls from (default MAX_SYNC_PEERS_PER_ROUND). */
  maxSyncPeersPerRound?: number
}

export interface SocialComponents {
  /** Live delivery: each author's topic. */
  gossip: GossipPort
  /** Replication over FEEDS_PROTOCOL, and the peers to pull from. */
  protocols: ProtocolPort
  /** Where bad entries and requests from peers are reported. */
  onRejected: RejectSink
  /** Finds other authors' inboxes and announces ours (the DHT); optional. */
  routing?: RoutingPort
  /** Connected peers whose signed binding names a did (the first place an inbox is looked for). */
  peersOf?: (did: string) => string[]
  /** Our user: its did, and the key that signs our entries. */
  identity: { did: string, key: Ed25519Key }
  store: FeedStore
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

export class SocialService extends TypedEventEmitter<SocialEvents> {
  readonly store: FeedStore
  readonly did: string
  private readonly key: Ed25519Key
  private readonly gossip: GossipPort
  private readonly protocols: ProtocolPort
  private readonly onRejected: RejectSink
  private readonly replication: Replication
  /** Notices of replies and likes, both ways. */
  readonly inbox: Inbox
  private readonly syncIntervalMs: number
  private readonly maxSyncPeersPerRound: number
  private readonly locks = new KeyedLock()
  private readonly syncing = new Map<string, Promise<number>>()
  /** Feed topics we are subscribed to, each with its unsubscribe. */
  private readonly topics = new Map<string, () => void>()
  private follows = new Set<string>()
  private replicate = new Set<string>()
  private muted = new Set<string>()
  private blocked = new Set<string>()
  private forked = new Set<string>()
  private timer?: ReturnType<typeof setInterval>
  /** Our latest profile entry (sent with our notices), once looked up: null for none. */
  private profileEntry?: Promise<Uint8Array | null>
  private stopIdentify?: () => void
  private started = false

  constructor (init: SocialInit, components: SocialComponents) {
    super()
    this.gossip = components.gossip
    this.protocols = components.protocols
    this.onRejected = components.onRejected
    this.store = components.store
    this.key = components.identity.key
    this.did = components.identity.did
    this.syncIntervalMs = init.syncIntervalMs ?? SYNC_INTERVAL_MS
    this.maxSyncPeersPerRound = init.maxSyncPeersPerRound ?? MAX_SYNC_PEERS_PER_ROUND
    this.replication = new Replication({
      protocols: this.protocols,
      onRejected: this.onRejected,
      host: {
        did: this.did,
        store: this.store,
        replicating: () => this.replicating(),
        replicates: did => this.replicate.has(did),
        isBlocked: did => this.blocked.has(did),
        isForked: did => this.forked.has(did),
        ingestEntry: async entry => await this.ingestEntry(entry)
      }
    })
    this.inbox = new Inbox({
      protocols: this.protocols,
      routing: components.routing,
      peersOf: components.peersOf,
      onRejected: this.onRejected,
      host: {
        did: this.did,
        store: this.store,
        isBlocked: did => this.blocked.has(did),
        isMuted: did => this.muted.has(did),
        onStored: e => { this.entryEvent(e) },
        ownProfile: async () => await this.ownProfile()
      }
    })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.muted = await this.store.listed('mute')
    this.blocked = await this.store.listed('block')
    this.forked = new Set((await this.store.forks()).map(f => f.author))
    await this.refreshFollows()
    await this.protocols.handle(FEEDS_PROTOCOL, this.replication.handler, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS,
      runOnLimitedConnection: true
    })
    // A peer that finished identify and speaks the feeds protocol may hold feeds we replicate.
    this.stopIdentify = this.protocols.onPeer('identify', (peer, protocols) => {
      if (protocols?.includes(FEEDS_PROTOCOL) === true) void this.syncWith(peer).catch(() => {})
    })
    await this.inbox.start()
    this.timer = setInterval(() => { void this.syncRound() }, this.syncIntervalMs)
    this.timer.unref?.()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    clearInterval(this.timer)
    this.stopIdentify?.()
    this.stopIdentify = undefined
    for (const unsubscribe of this.topics.values()) unsubscribe()
    this.topics.clear()
    await this.protocols.unhandle(FEEDS_PROTOCOL)
    await this.inbox.stop()
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
    for (const old of this.follows) if (!follows.has(old) && old !== this.did) this.unsubscribe(feedTopic(old))
    if (this.started) for (const f of follows) if (!this.blocked.has(f)) this.subscribe(feedTopic(f))
    this.follows = follows
    this.replicate = replicate
  }

  // -- our own feed --------------------------------------------------------------------------

  /**
   * Appends an entry to our feed (durably), then pushes it to followers. When the store cannot save
   * it (StoreWriteError) nothing is sent and the feed's head stays where it was, so the next entry
   * takes the same seq and no follower ever sees two entries at one seq.
   */
  async append (kind: EntryKind, body: EntryBody, options: { author?: string } = {}): Promise<Entry> {
    const entry = await this.locked(this.did, async () => {
      const head = await this.store.head(this.did)
      const e = await createEntry(this.key, head, kind, body, Date.now())
      await this.store.append(e, { sync: true })
      return e
    })
    if (kind === 'follow' || kind === 'unfollow') await this.refreshFollows()
    if (kind === 'profile') this.profileEntry = Promise.resolve(entry.bytes)
    this.entryEvent(entry)
    void this.gossip.publish(feedTopic(this.did), entry.bytes).catch(() => {})
    if (kind === 'reply' || kind === 'like') void this.notify(entry, options.author).catch(() => {})
    return entry
  }

  /**
   * Hands our reply or like to the author of its target (the author we hold it under, else
   * `hint`) and emits `feed:notice` with the verdict. Nothing is sent for our own entries or a
   * blocked author; an author offline loses the notice (replication may bring the entry later).
   */
  async notify (entry: Entry, hint?: string): Promise<string | undefined> {
    const body = entry.payload.body as Partial<ReplyBody & LikeBody>
    const target = body.to ?? body.of
    if (target == null) return undefined
    const author = (await this.store.locate(target))?.author ?? (hint != null && isDid(hint) ? hint : undefined)
    if (author == null || author === this.did || this.blocked.has(author)) return undefined
    let result: string
    try {
      result = await this.inbox.send(author, entry)
    } catch (err) {
      result = (err as Error).name
      if (!(err instanceof InboxUnreachableError)) log('notice to %s refused: %s', author, (err as Error).message)
    }
    this.safeDispatchEvent('feed:notice', { detail: { to: author, id: entry.id.toString(), kind: entry.payload.kind, result } })
    return result
  }

  /** Our latest profile entry's bytes, if we have one (our feed is read once, then kept up to date). */
  private async ownProfile (): Promise<Uint8Array | undefined> {
    this.profileEntry ??= (async () => {
      let latest: Uint8Array | null = null
      const head = (await this.store.head(this.did))?.seq ?? 0
      for (let from = 1; from <= head; from += MAX_TIMELINE_LIMIT) {
        for (const e of await this.entries(this.did, { from, limit: MAX_TIMELINE_LIMIT })) if (e.payload.kind === 'profile') latest = e.bytes
      }
      return latest
    })()
    return (await this.profileEntry) ?? undefined
  }

  async post (text: string, attachments?: CID[]): Promise<Entry> {
    return await this.append('post', { text, attachments } satisfies PostBody)
  }

  /** A reply; `author` names the target's author when we do not hold it (for the notice). */
  async reply (to: CID, text: string, attachments?: CID[], options: { author?: string } = {}): Promise<Entry> {
    return await this.append('reply', { text, to, attachments } satisfies ReplyBody, options)
  }

  async like (of: CID, options: { author?: string } = {}): Promise<Entry> { return await this.append('like', { of }, options) }

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

  /** Posts and replies of the authors we follow and ours, and the replies to ours we accepted from anyone, newest first. */
  async timeline (options: { limit?: number, before?: string } = {}): Promise<TimelineEntry[]> {
    const limit = Math.max(1, Math.min(options.limit ?? 20, MAX_TIMELINE_LIMIT))
    const include = (a: string): boolean => (a === this.did || this.follows.has(a)) && !this.muted.has(a) && !this.blocked.has(a)
    const includeNotice = (a: string): boolean => !this.muted.has(a) && !this.blocked.has(a)
    const out: TimelineEntry[] = []
    const names = new Map<string, string | undefined>()
    const seen = new Set<string>()
    for await (const item of this.store.timeline({ before: options.before, include, includeNotice })) {
      const e = item.notice === true ? await this.store.notice(item.cursor) : await this.store.get(item.author, item.seq)
      // A reply we hold both from its feed and as a notice shows once.
      if (e == null || seen.has(e.id.toString()) || await this.store.isDeleted(e.id)) continue
      seen.add(e.id.toString())
      if (!names.has(item.author)) names.set(item.author, (await this.store.profile(item.author)).name ?? await this.store.noticeName(item.author))
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
      await this.inbox.forget(did)
    } else {
      this.blocked.delete(did)
    }
    await this.refreshFollows()
  }

  /** Emits `feed:entry` for a stored entry. */
  private entryEvent (e: Entry): void {
    const text = (e.payload.body as { text?: string }).text
    this.safeDispatchEvent('feed:entry', { detail: { author: e.author, seq: e.payload.seq, id: e.id.toString(), kind: e.payload.kind, ts: e.payload.ts, text } })
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
          held: base64(held?.bytes ?? new Uint8Array(0)),
          other: base64(entry.bytes),
          at: Date.now()
        }
        await this.store.recordFork(evidence)
        this.forked.add(author)
        this.safeDispatchEvent('feed:fork', { detail: { author: evidence.author, seq: evidence.seq } })
        throw new ForkedFeedError(`${author} signed two entries at seq ${entry.payload.seq}`)
      }
      checkAppend(head, entry, Date.now())
      await this.store.append(entry)
      return 'stored' as const
    })
    if (result === 'stored') {
      this.entryEvent(entry)
      if (entry.payload.kind === 'follow' || entry.payload.kind === 'unfollow') {
        if (this.follows.has(author)) void this.refreshFollows().catch(() => {})
      }
    }
    return result
  }

  private subscribe (topic: string): void {
    if (this.topics.has(topic)) return
    this.topics.set(topic, this.gossip.subscribe(topic, async m => { await this.onGossip(m.topic, m.from, m.data) }))
  }

  private unsubscribe (topic: string): void {
    this.topics.get(topic)?.()
    this.topics.delete(topic)
  }

  /** A gossip message on a feed topic (our subscriptions call this): stored if it is its author's next; a gap starts a pull. */
  async onGossip (topic: string, from: string, data: Uint8Array): Promise<void> {
    if (!topic.startsWith(FEED_TOPIC_PREFIX) || data.length > MAX_ENTRY_BYTES) return
    try {
      const result = await this.ingest(data, { author: topic.slice(FEED_TOPIC_PREFIX.length) })
      log('gossip entry on %s: %s', topic, result)
    } catch (err) {
      if (err instanceof SequenceGapError) {
        // We missed some: pull from the peer that published it, or anyone.
        let connected = false
        try { connected = this.protocols.connections(from).length > 0 } catch {}
        if (connected) void this.syncWith(from).catch(() => {})
        else void this.syncRound().catch(() => {})
        return
      }
      // Our own store failing (a full disk) is not the sender's fault: the entry comes again by a later pull.
      if (isStoreWriteError(err)) { log('gossip entry on %s not stored: %s', topic, (err as Error).message); return }
      if (!(err instanceof ForkedFeedError)) this.onRejected(from, 'gossip:' + topic, err as Error)
    }
  }

  // -- replication --------------------------------------------------------------------------

  private async syncRound (): Promise<void> {
    const peers = this.protocols.peers()
    for (let i = peers.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [peers[i], peers[j]] = [peers[j], peers[i]]
    }
    for (const peer of peers.slice(0, this.maxSyncPeersPerRound)) await this.syncWith(peer).catch(() => {})
  }

  /** The authors whose feeds we replicate. */
  replicating (): string[] { return [...this.replicate] }

  /** Pulls everything a peer (its id, or a PeerId) holds beyond our heads, for the feeds we replicate. */
  async syncWith (peer: string | { toString: () => string }): Promise<number> {
    const key = peer.toString()
    const running = this.syncing.get(key)
    if (running != null) return await running
    if (!this.started) return 0
    const run = this.replication.pull(key).finally(() => { this.syncing.delete(key) })
    this.syncing.set(key, run)
    return await run
  }
}
