/**
 * The holder side of the swarm: answers a downloader's OPEN with a bitfield of the root's leaves
 * held here, then serves its WANTs one at a time in order, within a window (MAX_BLOCKS_IN_FLIGHT_PER_PEER)
 * and a request rate per peer; while we are still fetching a root ourselves, each leaf that
 * arrives is pushed to its open sessions as HAVE. A downloader that breaks the protocol loses its
 * session and is reported; holders that lie are banned on the downloading side, where a lie costs
 * something.
 */
import type { Stream } from '@libp2p/interface'
import * as lp from 'it-length-prefixed'
import type { CID } from 'multiformats/cid'
import type { RejectSink, RemotePeer } from '../net/ports.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import { BlockNotFoundError, type ContentBlockstore } from './blocks.ts'
import { fileLeaves, UnsupportedContentError, type Leaf } from './reader.ts'
import {
  MAX_BLOCKS_IN_FLIGHT_PER_PEER, MAX_REQUEST_FRAME_BYTES, REQUEST_BURST, REQUESTS_PER_PEER_PER_SECOND, SESSION_OPEN_TIMEOUT_MS
} from './swarm-limits.ts'
import { isViolation, SwarmRateLimitError, writeFrame, type SwarmStats } from './swarm-session.ts'
import { bitfieldBytes, decodeMessage, setBit, SWARM_PROTOCOL, SwarmProtocolError, type HolderStatus } from './swarm-wire.ts'

/** Roots whose leaf index a holder keeps in memory at once. */
export const MAX_CACHED_LEAF_INDEXES = 256
/** Peers whose request rate a holder tracks at once. */
export const MAX_RATE_LIMITED_PEERS = 1024

export interface HolderInit {
  blockstore: ContentBlockstore
  stats: SwarmStats
  isBanned: (peer: string) => boolean
  onRejected: RejectSink
}

export class Holder {
  private readonly blockstore: ContentBlockstore
  private readonly stats: SwarmStats
  private readonly isBanned: (peer: string) => boolean
  private readonly onRejected: RejectSink
  /** Requests per peer (REQUESTS_PER_PEER_PER_SECOND, REQUEST_BURST). */
  private readonly buckets = new TokenBuckets(REQUESTS_PER_PEER_PER_SECOND, REQUEST_BURST, MAX_RATE_LIMITED_PEERS)
  /** Leaf index (CID -> position) of roots asked for. */
  private readonly leafCache = new Map<string, Map<string, number>>()
  /** Sessions by root that we hold only in part, to push HAVE as leaves arrive. */
  private readonly serving = new Map<string, Set<Stream>>()

  constructor (init: HolderInit) {
    this.blockstore = init.blockstore
    this.stats = init.stats
    this.isBanned = init.isBanned
    this.onRejected = init.onRejected
  }

  /** A block was stored here: tells the sessions of roots it is a leaf of. */
  pushHave (cid: CID): void {
    const key = cid.toString()
    for (const [root, streams] of this.serving) {
      const index = this.leafCache.get(root)?.get(key)
      if (index == null) continue
      for (const stream of streams) void writeFrame(stream, { type: 'have', index }).catch(() => {})
    }
  }

  /** What we hold of a root, as a holder answers OPEN. */
  async bitfield (root: CID): Promise<{ status: HolderStatus, leaves: number, bits: Uint8Array }> {
    if (!this.blockstore.has(root)) return { status: 'none', leaves: 0, bits: new Uint8Array(0) }
    const key = root.toString()
    let index = this.leafCache.get(key)
    if (index == null) {
      let leaves: Leaf[]
      try {
        leaves = await fileLeaves(async c => await this.blockstore.get(c), root)
      } catch (err) {
        if (err instanceof UnsupportedContentError) return { status: 'complete', leaves: 0, bits: new Uint8Array(0) }
        if (err instanceof BlockNotFoundError) return { status: 'partial', leaves: 0, bits: new Uint8Array(0) }
        throw err
      }
      index = new Map(leaves.map((l, i) => [l.cid.toString(), i]))
      if (this.leafCache.size >= MAX_CACHED_LEAF_INDEXES) this.leafCache.delete(this.leafCache.keys().next().value as string)
      this.leafCache.set(key, index)
    }
    const bits = new Uint8Array(bitfieldBytes(index.size))
    let all = true
    let i = 0
    for (const k of index.keys()) {
      if (this.blockstore.hasKey(k)) setBit(bits, i)
      else all = false
      i++
    }
    return all ? { status: 'complete', leaves: 0, bits: new Uint8Array(0) } : { status: 'partial', leaves: index.size, bits }
  }

  /** The holder side of one session. */
  async serve (stream: Stream, remote: RemotePeer): Promise<void> {
    const peer = remote.peer
    if (this.isBanned(peer)) { stream.abort(new Error('banned')); return }
    const queue: CID[] = []
    let rootKey: string | undefined
    let wake: (() => void) | undefined
    let ended = false
    const openTimer = setTimeout(() => { stream.abort(new SwarmProtocolError('no OPEN in time')) }, SESSION_OPEN_TIMEOUT_MS)
    const sender = (async () => {
      while (!ended || queue.length > 0) {
        const cid = queue.shift()
        if (cid == null) { await new Promise<void>(resolve => { wake = resolve }); continue }
        let bytes: Uint8Array | undefined
        try {
          bytes = this.blockstore.has(cid) ? await this.blockstore.get(cid) : undefined
        } catch {}
        await writeFrame(stream, bytes == null ? { type: 'dont-have', cid } : { type: 'block', cid, bytes })
        if (bytes != null) {
          this.stats.blocksServed++
          this.stats.bytesServed += bytes.length
        }
      }
    })().catch(() => { ended = true })
    try {
      for await (const frame of lp.decode(stream, { maxDataLength: MAX_REQUEST_FRAME_BYTES })) {
        const msg = decodeMessage(frame.subarray())
        if (rootKey == null) {
          if (msg.type !== 'open') throw new SwarmProtocolError(`expected OPEN, got ${msg.type}`)
          clearTimeout(openTimer)
          rootKey = msg.root.toString()
          const bf = await this.bitfield(msg.root)
          await writeFrame(stream, { type: 'bitfield', ...bf })
          if (bf.status === 'partial') {
            const set = this.serving.get(rootKey) ?? new Set()
            set.add(stream)
            this.serving.set(rootKey, set)
          }
          continue
        }
        if (msg.type === 'want') {
          if (queue.length >= MAX_BLOCKS_IN_FLIGHT_PER_PEER) throw new SwarmProtocolError(`more than ${MAX_BLOCKS_IN_FLIGHT_PER_PEER} requests in flight`)
          if (!this.buckets.take(peer)) throw new SwarmRateLimitError(`more than ${REQUESTS_PER_PEER_PER_SECOND} requests per second`)
          queue.push(msg.cid)
          wake?.()
        } else if (msg.type === 'cancel') {
          const key = msg.cid.toString()
          const i = queue.findIndex(c => c.toString() === key)
          if (i >= 0) queue.splice(i, 1)
        } else {
          throw new SwarmProtocolError(`unexpected ${msg.type} from a downloader`)
        }
      }
      ended = true
      wake?.()
      await sender
      await stream.close().catch(() => {})
    } catch (err) {
      ended = true
      queue.length = 0
      wake?.()
      stream.abort(err as Error)
      const e = err as Error
      if (isViolation(e)) this.onRejected(peer, SWARM_PROTOCOL, e)
    } finally {
      clearTimeout(openTimer)
      if (rootKey != null) {
        const set = this.serving.get(rootKey)
        set?.delete(stream)
        if (set?.size === 0) this.serving.delete(rootKey)
      }
      await sender
    }
  }
}
