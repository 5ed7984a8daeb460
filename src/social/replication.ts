/**
 * Feed replication over `/peerverse/feeds/1.0.0`, both ends: the puller asks a peer for its heads
 * of the feeds we replicate, then fetches what we lack in batches, verifying each entry before it
 * is stored (through the service's ingestEntry); the server answers heads and entry ranges, never
 * for blocked authors and never past a fork. Each exchange is one request frame and a stream of
 * answer frames (src/net/rpc.ts), so the framing bounds and verdicts live in one place; the
 * request's own checks (parseRequest) and the rate limit give the verdicts of this protocol.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { logger } from '@libp2p/logger'
import { isDid } from '../identity/did.ts'
import type { ProtocolHandler, ProtocolPort, RejectSink } from '../net/ports.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import { request, serve } from '../net/rpc.ts'
import { decodeEntry, ForkedFeedError, InvalidEntryError, MAX_ENTRY_BYTES, SequenceGapError, type Entry, type FeedHead } from './feed.ts'
import type { FeedStore } from './store.ts'
import { isStoreWriteError } from '../store/errors.ts'

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
/** Peers whose request rate we track at once (both directions). */
export const MAX_RATE_LIMITED_PEERS = 1024
/** Entries the server reads from the store and writes to the socket at once (still one frame each). */
export const SERVE_WRITE_ENTRIES = 64

export class ReplicationRateLimitError extends Error {
  name = 'ReplicationRateLimitError'
}

export class InvalidRequestError extends Error {
  name = 'InvalidRequestError'
}

export type FeedsRequest = { op: 'heads', dids: string[] } | { op: 'entries', did: string, from: number, limit: number }

/** What replication needs of the social service around it. */
export interface ReplicationHost {
  readonly did: string
  readonly store: FeedStore
  /** The authors whose feeds we replicate now. */
  replicating: () => string[]
  replicates: (did: string) => boolean
  isBlocked: (did: string) => boolean
  isForked: (did: string) => boolean
  /** Stores a verified entry if it is its author's next (the service's ingestEntry). */
  ingestEntry: (entry: Entry) => Promise<'stored' | 'duplicate' | 'ignored'>
}

export interface ReplicationComponents {
  protocols: Pick<ProtocolPort, 'dial'>
  onRejected: RejectSink
  host: ReplicationHost
}

export class Replication {
  private readonly protocols: Pick<ProtocolPort, 'dial'>
  private readonly onRejected: RejectSink
  private readonly host: ReplicationHost
  /** Requests peers make of us, per peer (REQUESTS_PER_PEER_PER_SECOND, REQUEST_BURST). */
  private readonly buckets = new TokenBuckets(REQUESTS_PER_PEER_PER_SECOND, REQUEST_BURST, MAX_RATE_LIMITED_PEERS)
  /** Our own requests, per peer: the server's limits with a margin. */
  private readonly outgoing = new TokenBuckets(REQUESTS_PER_PEER_PER_SECOND * 0.8, Math.floor(REQUEST_BURST / 2), MAX_RATE_LIMITED_PEERS)
  /** The server side, as a protocol handler. */
  readonly handler: ProtocolHandler

  constructor (components: ReplicationComponents) {
    this.protocols = components.protocols
    this.onRejected = components.onRejected
    this.host = components.host
    this.handler = serve({
      protocol: FEEDS_PROTOCOL,
      maxRequestBytes: MAX_REQUEST_BYTES,
      onRejected: this.onRejected,
      isViolation: e => e instanceof InvalidRequestError || e instanceof ReplicationRateLimitError
    }, async (req, { remote, signal, out }) => {
      if (!this.buckets.take(remote.peer)) throw new ReplicationRateLimitError(`more than ${REQUESTS_PER_PEER_PER_SECOND} requests per second`)
      await this.answer(parseRequest(req), frames => out.writeMany(frames, { signal }))
    })
  }

  // -- the puller ---------------------------------------------------------------------------

  private async request (peer: string, req: FeedsRequest, onFrame: (bytes: Uint8Array) => Promise<boolean>): Promise<void> {
    await this.pace(peer)
    await request(this.protocols, peer, FEEDS_PROTOCOL, dagCbor.encode(req), onFrame, {
      maxFrameBytes: Math.max(MAX_ENTRY_BYTES, MAX_REQUEST_BYTES),
      runOnLimitedConnection: true
    })
  }

  /** Waits for our own request budget with a peer (the server's limits, with a margin). */
  private async pace (peer: string): Promise<void> {
    while (!this.outgoing.take(peer)) await new Promise(resolve => setTimeout(resolve, this.outgoing.wait(peer)))
  }

  /** Pulls everything a peer holds beyond our heads, for the feeds we replicate; returns entries stored. */
  async pull (peer: string): Promise<number> {
    const host = this.host
    let stored = 0
    const wanted = host.replicating().filter(d => !host.isForked(d) && d !== host.did).slice(0, MAX_HEADS_PER_REQUEST)
    if (wanted.length === 0) return 0
    let heads: Record<string, number> = {}
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
        const ours = (await host.store.head(did))?.seq ?? 0
        if (theirs <= ours || host.isForked(did) || host.isBlocked(did) || !host.replicates(did)) break
        const from = ours + 1
        const limit = Math.min(MAX_BATCH_ENTRIES, theirs - ours)
        let got = 0
        let progressed = 0
        let failed = false
        try {
          await this.request(peer, { op: 'entries', did, from, limit }, async frame => {
            got++
            try {
              const entry = await decodeEntry(frame)
              if (entry.author !== did) throw new InvalidEntryError(`asked for ${did}, got an entry of ${entry.author}`)
              if (entry.payload.seq !== from + got - 1) throw new SequenceGapError(`asked for entry ${from + got - 1} of ${did}, got ${entry.payload.seq}`)
              if (await host.ingestEntry(entry) === 'stored') { stored++; progressed++ }
            } catch (err) {
              failed = true
              // Our own store failing (a full disk) is not the peer's fault.
              if (!(err instanceof ForkedFeedError) && !isStoreWriteError(err)) this.onRejected(peer, FEEDS_PROTOCOL, err as Error)
              return false
            }
            return got < limit
          })
        } catch (err) {
          log('pulling %s from %s failed: %s', did, peer, (err as Error).message)
          break
        }
        // A short, failed or fruitless batch ends this feed for this round.
        if (failed || got < limit || progressed === 0) break
      }
    }
    return stored
  }

  // -- the server ---------------------------------------------------------------------------

  /** Answers one request through `write` (several frames per call). */
  private async answer (req: FeedsRequest, write: (frames: Uint8Array[]) => Promise<void>): Promise<void> {
    const host = this.host
    if (req.op === 'heads') {
      const heads: Record<string, number> = {}
      for (const did of req.dids) {
        if (host.isBlocked(did) || !isDid(did)) continue
        const head = await this.headToServe(did)
        if (head != null) heads[did] = head.seq
      }
      await write([dagCbor.encode({ heads })])
    } else if (!host.isBlocked(req.did)) {
      const head = await this.headToServe(req.did)
      const last = Math.min(head?.seq ?? 0, req.from + req.limit - 1)
      for (let from = req.from; from <= last; from += SERVE_WRITE_ENTRIES) {
        // One write per range: still one length-prefixed frame per entry, fewer socket writes.
        const range = await host.store.range(req.did, from, Math.min(SERVE_WRITE_ENTRIES, last - from + 1))
        if (range.length > 0) await write(range)
      }
    }
  }

  /** Our head of a feed as we serve it: a forked feed is served only up to before the fork. */
  private async headToServe (did: string): Promise<FeedHead | null> {
    const store = this.host.store
    const head = await store.head(did)
    if (head == null || !this.host.isForked(did)) return head
    const fork = await store.fork(did)
    const seq = Math.min(head.seq, (fork?.seq ?? 1) - 1)
    if (seq < 1) return null
    const e = await store.get(did, seq)
    return e == null ? null : { seq, id: e.id, ts: e.payload.ts }
  }
}

/** Decodes a replication request; InvalidRequestError otherwise. */
export function parseRequest (bytes: Uint8Array): FeedsRequest {
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
