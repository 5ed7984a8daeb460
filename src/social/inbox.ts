/**
 * The inbox: replies and likes from people we do not follow still reach us. Feeds replicate along
 * follows, so without it a stranger's reply to our post would never arrive. When we append a reply
 * or like to someone else's entry, we also hand the signed entry itself (a notice) to its author's
 * peer over `/peerverse/inbox/1.0.0`; it is checkable against the replier's own key, so no server
 * vouches for it.
 *
 * Finding the author's peer, cheapest first: a connected peer whose signed binding names the
 * author (no lookup at all), else the DHT providers of the author's inbox key (inboxKey), which
 * every peer provides for its own user. A direct stream rather than a gossip topic per author:
 * GossipSub only publishes to directly connected subscribers of a topic it does not itself hold
 * (fanout), so a topic would reach the author exactly when a direct stream does and never
 * otherwise, while a stream also brings the author's verdict back. A notice is public (the entry is
 * in the replier's public feed), so sending it to a peer that falsely provides the key leaks
 * nothing. When the author is offline the notice is lost; the reply still reaches them later if
 * their peer replicates the replier's feed (a follow, or a friend of a friend).
 *
 * The author's peer checks every notice (size, signature, a reply or like whose target is one of
 * its own entries), ignores blocked and muted senders, rate-limits per sender (the entry's author)
 * and per peer, and keeps at most MAX_INBOX_ENTRIES, oldest dropped first. A notice may carry the
 * sender's latest profile entry (signed like any entry), so the author sees a name rather than a
 * did. The request is `{ entry, profile? }` (entry bytes, DAG-CBOR); the answer frame is the
 * verdict: `{ result }` or `{ error, message }` with the named error.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { logger } from '@libp2p/logger'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { sha256 } from '../identity/hash.ts'
import { PROTOCOL_MAX_INBOUND_STREAMS, PROTOCOL_MAX_OUTBOUND_STREAMS } from '../net/limits.ts'
import type { ProtocolPort, RejectSink, RoutingPort } from '../net/ports.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import { request, serve } from '../net/rpc.ts'
import { isStoreWriteError } from '../store/errors.ts'
import { decodeEntry, FutureEntryError, MAX_CLOCK_SKEW_MS, MAX_ENTRY_BYTES, type Entry, type LikeBody, type ReplyBody } from './feed.ts'
import type { FeedStore } from './store.ts'

const log = logger('peerverse:social:inbox')

export const INBOX_PROTOCOL = '/peerverse/inbox/1.0.0'
/** Notices one sender (the entry's author) may have accepted per minute ... */
export const MAX_NOTICES_PER_SENDER_PER_MINUTE = 30
/** ... and one peer may hand us per minute (it may forward several senders' notices). */
export const MAX_NOTICES_PER_PEER_PER_MINUTE = 120
/** Notices kept; past it the oldest are dropped. */
export const MAX_INBOX_ENTRIES = 10_000
/** Largest notice request: the entry, the sender's profile entry and their framing. */
export const MAX_NOTICE_BYTES = 2 * MAX_ENTRY_BYTES + 64
/** Largest request frame read at all (a larger one is a framing error). */
export const MAX_NOTICE_FRAME_BYTES = 2 * MAX_NOTICE_BYTES
/** Largest answer frame. */
export const MAX_NOTICE_ANSWER_BYTES = 1024
/** Peers one notice is sent to at most (an author's several devices). */
export const MAX_NOTICE_TARGETS = 3
/** How long a DHT lookup for an author's inbox may take. */
export const NOTICE_LOOKUP_TIMEOUT_MS = 10_000
/** How long one delivery may take. */
export const NOTICE_SEND_TIMEOUT_MS = 10_000
/** How long a found inbox is remembered, and for how many authors. */
export const INBOX_CACHE_MS = 5 * 60_000
export const MAX_CACHED_INBOXES = 256
/** Senders and peers whose rate we track at once. */
export const MAX_RATE_LIMITED_SENDERS = 4096
/** How long our own inbox key's announcement may take. */
export const INBOX_PROVIDE_TIMEOUT_MS = 30_000
/** How often our inbox key is announced again ... */
export const INBOX_REANNOUNCE_MS = 30 * 60_000
/** ... or sooner, while fewer peers than this were connected at the last announcement and more are now. */
export const INBOX_SETTLED_PEERS = 8
/** Wait after a peer's identify before announcing (a burst of connections is one announcement). */
export const INBOX_ANNOUNCE_DELAY_MS = 1_000

export const INBOX_KEY_PREFIX = 'peerverse/inbox/1/'

/** The DHT key an author's peer provides so others can find its inbox. */
export function inboxKey (did: string): CID {
  return CID.createV1(raw.code, createDigest(sha256Hasher.code, sha256(INBOX_KEY_PREFIX + did)))
}

export class NoticeTooLargeError extends Error {
  name = 'NoticeTooLargeError'
}
/** The notice is not a reply or like, or not well formed. */
export class InvalidNoticeError extends Error {
  name = 'InvalidNoticeError'
}
/** The reply or like is not to one of our own entries. */
export class NoticeTargetError extends Error {
  name = 'NoticeTargetError'
}
export class NoticeRateLimitError extends Error {
  name = 'NoticeRateLimitError'
}
/** The author's peer could not be found or reached. */
export class InboxUnreachableError extends Error {
  name = 'InboxUnreachableError'
}

/** What the author's peer did with a notice. */
export type NoticeResult = 'stored' | 'duplicate' | 'ignored'

/** What the inbox needs of the social service around it. */
export interface InboxHost {
  readonly did: string
  readonly store: FeedStore
  isBlocked: (did: string) => boolean
  isMuted: (did: string) => boolean
  /** A notice was kept (the service emits `feed:entry`). */
  onStored: (entry: Entry) => void
  /** Our latest profile entry, sent along with our notices (optional). */
  ownProfile?: () => Promise<Uint8Array | undefined>
}

export interface InboxComponents {
  protocols: ProtocolPort
  /** Finds other authors' inboxes and announces ours; without it only connected peers are tried. */
  routing?: RoutingPort
  /** Connected peers whose signed binding names `did`. */
  peersOf?: (did: string) => string[]
  onRejected: RejectSink
  host: InboxHost
  /** Notices kept at most (default MAX_INBOX_ENTRIES). */
  maxEntries?: number
  /** The clock the rate limits read (default Date.now). */
  now?: () => number
}

/**
 * Checks a decoded notice against our own feed: a reply or like by someone else, not from the
 * future, whose target is one of our entries. Throws InvalidNoticeError, FutureEntryError or
 * NoticeTargetError; returns the target.
 */
export async function checkNotice (entry: Entry, own: { did: string, locate: (id: CID) => Promise<{ author: string } | undefined> }, now: number): Promise<CID> {
  const { kind, body, ts } = entry.payload
  if (kind !== 'reply' && kind !== 'like') throw new InvalidNoticeError(`a notice is a reply or a like, not a ${kind}`)
  if (entry.author === own.did) throw new InvalidNoticeError('a notice from ourselves')
  if (ts > now + MAX_CLOCK_SKEW_MS) throw new FutureEntryError(`the notice is dated ${ts - now} ms in the future`)
  const target = kind === 'reply' ? (body as ReplyBody).to : (body as LikeBody).of
  const at = await own.locate(target)
  if (at?.author !== own.did) throw new NoticeTargetError(`${target.toString()} is not one of our entries`)
  return target
}

export class Inbox {
  private readonly protocols: ProtocolPort
  private readonly routing?: RoutingPort
  private readonly peersOf?: (did: string) => string[]
  private readonly onRejected: RejectSink
  private readonly host: InboxHost
  private readonly senders = new TokenBuckets(MAX_NOTICES_PER_SENDER_PER_MINUTE / 60, MAX_NOTICES_PER_SENDER_PER_MINUTE, MAX_RATE_LIMITED_SENDERS)
  private readonly peers = new TokenBuckets(MAX_NOTICES_PER_PEER_PER_MINUTE / 60, MAX_NOTICES_PER_PEER_PER_MINUTE, MAX_RATE_LIMITED_SENDERS)
  /** Authors' inboxes found in the DHT: peers and their addresses. */
  private readonly found = new Map<string, { at: number, peers: Array<{ peer: string, addresses: string[] }> }>()
  private kept = 0
  private readonly maxEntries: number
  private readonly now: () => number
  private controller?: AbortController
  /** Our last announcement: when, and how many peers were connected then. */
  private announced?: { at: number, peers: number }
  private announcing = false
  private announceTimer?: ReturnType<typeof setTimeout>
  private stopIdentify?: () => void
  /** One notice stored at a time, so the count and the cap hold. */
  private storing: Promise<unknown> = Promise.resolve()
  readonly handler: ReturnType<typeof serve>

  constructor (components: InboxComponents) {
    this.protocols = components.protocols
    this.routing = components.routing
    this.peersOf = components.peersOf
    this.onRejected = components.onRejected
    this.host = components.host
    this.maxEntries = components.maxEntries ?? MAX_INBOX_ENTRIES
    this.now = components.now ?? Date.now
    this.handler = serve({ protocol: INBOX_PROTOCOL, maxRequestBytes: MAX_NOTICE_FRAME_BYTES, onRejected: this.onRejected }, async (req, { remote, signal, out }) => {
      let answer: Record<string, string>
      try {
        answer = { result: await this.receive(req, remote.peer) }
      } catch (err) {
        const e = err as Error
        // Our own store failing is not the sender's fault.
        if (!isStoreWriteError(e)) this.onRejected(remote.peer, INBOX_PROTOCOL, e)
        answer = { error: e.name, message: e.message.slice(0, 200) }
      }
      await out.write(dagCbor.encode(answer), { signal })
    })
  }

  /** Counts the notices kept; then serves the protocol and announces our inbox. */
  async start (): Promise<void> {
    this.kept = await this.host.store.noticeCount()
    this.controller = new AbortController()
    await this.protocols.handle(INBOX_PROTOCOL, this.handler, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS,
      runOnLimitedConnection: true
    })
    if (this.routing != null) {
      this.stopIdentify = this.protocols.onPeer('identify', () => { this.scheduleAnnounce() })
      this.scheduleAnnounce()
    }
  }

  async stop (): Promise<void> {
    this.controller?.abort()
    this.controller = undefined
    clearTimeout(this.announceTimer)
    this.announceTimer = undefined
    this.stopIdentify?.()
    this.stopIdentify = undefined
    await this.routing?.cancelProvide(inboxKey(this.host.did)).catch(() => {})
    await this.protocols.unhandle(INBOX_PROTOCOL)
  }

  /** Announces our inbox key in the DHT soon, if it is due: never yet, long ago, or the network grew while small. */
  private scheduleAnnounce (): void {
    if (this.announceTimer != null || this.announcing || this.controller == null) return
    const peers = this.protocols.peers().length
    const last = this.announced
    const due = last == null || Date.now() - last.at > INBOX_REANNOUNCE_MS || (last.peers < INBOX_SETTLED_PEERS && peers > last.peers)
    if (!due || peers === 0) return
    this.announceTimer = setTimeout(() => {
      this.announceTimer = undefined
      const controller = this.controller
      if (controller == null || this.routing == null) return
      this.announcing = true
      const count = this.protocols.peers().length
      const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(INBOX_PROVIDE_TIMEOUT_MS)])
      void this.routing.provide(inboxKey(this.host.did), { signal })
        .then(() => { this.announced = { at: Date.now(), peers: count } })
        .catch(err => { log('announcing our inbox: %s', (err as Error).message) })
        .finally(() => { this.announcing = false })
    }, INBOX_ANNOUNCE_DELAY_MS)
    this.announceTimer.unref?.()
  }

  // -- the author's side --------------------------------------------------------------------

  /**
   * Checks a notice from `peer` and keeps it. Returns 'ignored' for a blocked or muted sender or a
   * deleted target, 'duplicate' for one kept already; throws the named errors for a bad one.
   */
  async receive (bytes: Uint8Array, peer: string): Promise<NoticeResult> {
    if (!this.peers.take(peer, 1, this.now())) throw new NoticeRateLimitError(`more than ${MAX_NOTICES_PER_PEER_PER_MINUTE} notices a minute from one peer`)
    const notice = parseNotice(bytes)
    const entry = await decodeEntry(notice.entry)
    const store = this.host.store
    const target = await checkNotice(entry, { did: this.host.did, locate: async id => await store.locate(id) }, Date.now())
    const profile = notice.profile == null ? undefined : await decodeEntry(notice.profile)
    if (profile != null && (profile.author !== entry.author || profile.payload.kind !== 'profile')) throw new InvalidNoticeError('the profile sent along is not the sender\'s profile entry')
    if (this.host.isBlocked(entry.author) || this.host.isMuted(entry.author) || await store.isDeleted(target)) return 'ignored'
    if (!this.senders.take(entry.author, 1, this.now())) throw new NoticeRateLimitError(`more than ${MAX_NOTICES_PER_SENDER_PER_MINUTE} notices a minute from ${entry.author}`)
    const run = this.storing.then(async () => await this.keep(entry, profile))
    this.storing = run.catch(() => {})
    const result = await run
    if (result === 'stored') this.host.onStored(entry)
    return result
  }

  private async keep (entry: Entry, profile?: Entry): Promise<'stored' | 'duplicate'> {
    const store = this.host.store
    if (this.kept >= this.maxEntries) this.kept -= await store.dropNotices({ oldest: this.kept - this.maxEntries + 1 })
    const result = await store.putNotice(entry)
    const name = (profile?.payload.body as { name?: string } | undefined)?.name
    if (profile != null && name != null) await store.putNoticeName(entry.author, profile.payload.seq, name)
    if (result === 'stored') this.kept++
    return result
  }

  /** Drops every kept notice of an author (a block). */
  async forget (did: string): Promise<void> {
    const run = this.storing.then(async () => { this.kept -= await this.host.store.dropNotices({ author: did }) })
    this.storing = run.catch(() => {})
    await run
  }

  // -- the replier's side -------------------------------------------------------------------

  /**
   * Hands our reply or like to `author`'s peer(s). Returns the best verdict any of them gave;
   * throws InboxUnreachableError when none could be found or reached, or the named error the
   * author's peer answered with.
   */
  async send (author: string, entry: Entry, options: { signal?: AbortSignal } = {}): Promise<NoticeResult> {
    const profile = await this.host.ownProfile?.().catch(() => undefined)
    const req = dagCbor.encode(profile == null ? { entry: entry.bytes } : { entry: entry.bytes, profile })
    const others = (targets: Array<{ peer: string, addresses: string[] }>): Array<{ peer: string, addresses: string[] }> =>
      targets.filter(t => t.peer !== this.protocols.peerId).slice(0, MAX_NOTICE_TARGETS)
    const direct = others((this.peersOf?.(author) ?? []).map(peer => ({ peer, addresses: [] })))
    if (direct.length > 0) {
      try {
        return await this.deliverAll(author, direct, req, options.signal)
      } catch (err) {
        // Connected but not answering: the DHT may know a better peer.
        if (!(err instanceof InboxUnreachableError)) throw err
      }
    }
    const found = others(await this.lookup(author, options.signal))
    if (found.length === 0) throw new InboxUnreachableError(`no peer of ${author} found`)
    try {
      return await this.deliverAll(author, found, req, options.signal)
    } catch (err) {
      if (err instanceof InboxUnreachableError) this.found.delete(author)
      throw err
    }
  }

  /** Sends to every target at once; the best verdict, else the first refusal, else InboxUnreachableError. */
  private async deliverAll (author: string, targets: Array<{ peer: string, addresses: string[] }>, req: Uint8Array, signal?: AbortSignal): Promise<NoticeResult> {
    const results = await Promise.allSettled(targets.map(async t => await this.deliver(t.peer, t.addresses, req, signal)))
    const ok = results.flatMap(r => r.status === 'fulfilled' ? [r.value] : [])
    for (const best of ['stored', 'duplicate', 'ignored'] as const) if (ok.includes(best)) return best
    const refused = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof InboxUnreachableError))
    if (refused != null) throw refused.reason
    throw new InboxUnreachableError(`no peer of ${author} answered`)
  }

  private async lookup (author: string, signal?: AbortSignal): Promise<Array<{ peer: string, addresses: string[] }>> {
    const cached = this.found.get(author)
    if (cached != null && Date.now() - cached.at < INBOX_CACHE_MS) return cached.peers
    if (this.routing == null) return []
    const peers: Array<{ peer: string, addresses: string[] }> = []
    const timeout = AbortSignal.timeout(NOTICE_LOOKUP_TIMEOUT_MS)
    try {
      for await (const p of this.routing.findProviders(inboxKey(author), { signal: signal == null ? timeout : AbortSignal.any([signal, timeout]) })) {
        if (p.peer === this.protocols.peerId || peers.some(q => q.peer === p.peer)) continue
        peers.push({ peer: p.peer, addresses: p.addresses })
        if (peers.length >= MAX_NOTICE_TARGETS) break
      }
    } catch (err) {
      log('looking up the inbox of %s: %s', author, (err as Error).message)
    }
    if (peers.length > 0) {
      if (this.found.size >= MAX_CACHED_INBOXES) this.found.delete(this.found.keys().next().value as string)
      this.found.set(author, { at: Date.now(), peers })
    }
    return peers
  }

  private async deliver (peer: string, addresses: string[], req: Uint8Array, signal?: AbortSignal): Promise<NoticeResult> {
    let answer: { result?: unknown, error?: unknown, message?: unknown } | undefined
    try {
      await request(this.protocols, peer, INBOX_PROTOCOL, req, frame => {
        answer = dagCbor.decode(frame)
        return false
      }, { maxFrameBytes: MAX_NOTICE_ANSWER_BYTES, timeoutMs: NOTICE_SEND_TIMEOUT_MS, signal, runOnLimitedConnection: true, addresses })
    } catch (err) {
      throw new InboxUnreachableError(`${peer}: ${(err as Error).message}`)
    }
    if (answer?.result === 'stored' || answer?.result === 'duplicate' || answer?.result === 'ignored') return answer.result
    throw refusal(String(answer?.error ?? 'InvalidNoticeError'), String(answer?.message ?? 'no verdict'))
  }
}

/** The entry (and profile entry) bytes of a notice request; NoticeTooLargeError or InvalidNoticeError otherwise. */
export function parseNotice (bytes: Uint8Array): { entry: Uint8Array, profile?: Uint8Array } {
  if (bytes.length > MAX_NOTICE_BYTES) throw new NoticeTooLargeError(`a notice of ${bytes.length} bytes, over ${MAX_NOTICE_BYTES}`)
  let value: unknown
  try {
    value = dagCbor.decode(bytes)
  } catch {
    throw new InvalidNoticeError('a notice is not DAG-CBOR')
  }
  const { entry, profile, ...rest } = (value ?? {}) as { entry?: unknown, profile?: unknown }
  if (!(entry instanceof Uint8Array) || typeof value !== 'object' || Object.keys(rest).length > 0) throw new InvalidNoticeError('a notice is a map of the entry bytes and, optionally, the profile entry bytes')
  if (profile !== undefined && !(profile instanceof Uint8Array)) throw new InvalidNoticeError('the profile must be entry bytes')
  for (const b of [entry, profile]) if (b != null && b.length > MAX_ENTRY_BYTES) throw new NoticeTooLargeError(`an entry of ${b.length} bytes, over ${MAX_ENTRY_BYTES}`)
  return profile === undefined ? { entry } : { entry, profile }
}

/** The author's peer's refusal, as an error of the same name. */
function refusal (name: string, message: string): Error {
  const err = new Error(message)
  err.name = /^[A-Za-z]{1,64}$/.test(name) ? name : 'InvalidNoticeError'
  return err
}
