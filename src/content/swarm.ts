/**
 * The swarm: fetching a file's blocks from many peers at once, and serving ours to others.
 *
 * A Download is one root being fetched. It finds holders among connected peers first and in the
 * DHT's provider records, opens one session (stream) per holder, and keeps each holder's window
 * of requests full. Whole-file fetches pick the rarest leaves first (BitTorrent); streaming reads
 * pick the missing leaves nearest their read position first (Spotify). A request that stalls is
 * sent again to another holder; when every missing leaf is already requested, idle holders are
 * asked for the same leaves (end game) and the losers are cancelled. Every block is hashed
 * against its CID before it is stored or returned; a holder that sends a wrong or unrequested
 * block is banned, disconnected and reported, and its requests go to the others.
 *
 * The holder side answers OPEN with a bitfield of the root's leaves it holds, then serves WANTs
 * one at a time in order, within a window and a request rate per peer.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import * as lp from 'it-length-prefixed'
import type { CID } from 'multiformats/cid'
import type { Network } from '../net/network.ts'
import { BlockNotFoundError, type Blockstore } from './blockstore.ts'
import { BlockVerificationError, fileLeaves, UnsupportedContentError, verifyBlock, type Leaf } from './reader.ts'
import {
  bitfieldBytes, decodeMessage, encodeMessage, getBit, MAX_FRAME_BYTES, setBit, SWARM_PROTOCOL,
  SwarmProtocolError, type HolderStatus, type SwarmMessage
} from './swarm-wire.ts'

const log = logger('peerverse:swarm')

/** Requests a downloader keeps outstanding with one holder; a holder refuses more. */
export const MAX_BLOCKS_IN_FLIGHT_PER_PEER = 8
/** Requests a holder accepts from one peer per second (a token bucket of this rate) ... */
export const REQUESTS_PER_PEER_PER_SECOND = 2048
/** ... with this burst. */
export const REQUEST_BURST = 256
/** Largest frame a holder reads from a downloader (requests only: no block is ever sent this way). */
export const MAX_REQUEST_FRAME_BYTES = 256
/** Concurrent sessions (streams) one connection may open to us, and we to it. */
export const MAX_SESSIONS_PER_CONNECTION = 32
/** Holders one download talks to at once. */
export const MAX_PEERS_PER_DOWNLOAD = 16
/** A request unanswered this long may be sent to another holder. */
export const STALL_TIMEOUT_MS = 5_000
/** A holder that stalls this many times is dropped from the download. */
export const MAX_STALLS_PER_SESSION = 3
/** Time a holder has to answer OPEN (and a downloader to send it). */
export const SESSION_OPEN_TIMEOUT_MS = 5_000
/** How often a download looks for more holders while it has fewer than it could use. */
export const PEER_REFRESH_MS = 1_000
/** A peer that said it holds nothing is not asked again for this long. */
export const PROBE_BACKOFF_MS = 2_000
/** DHT provider lookups for one download are this far apart at least. */
export const PROVIDER_LOOKUP_INTERVAL_MS = 10_000
/** Holders one provider lookup may add. */
export const MAX_PROVIDERS_PER_LOOKUP = 20
/** A peer that sent a bad block is ignored this long. */
export const BAN_MS = 10 * 60_000
/** An idle download keeps its sessions this long for the next read. */
export const DOWNLOAD_LINGER_MS = 10_000
/** A download that has found no holder for this long fails with NoProvidersError. */
export const NO_HOLDERS_TIMEOUT_MS = 30_000
/** Requests one download keeps outstanding across all its holders (bytes in flight: this many blocks). */
export const MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD = 24
/** The end game (asking a second holder for a leaf already requested) starts when this few leaves are missing. */
export const ENDGAME_MAX_MISSING = 4
/** Peers asked for the same leaf at once in the end game. */
export const ENDGAME_MAX_REQUESTERS = 2

export class BadBlockError extends Error {
  name = 'BadBlockError'
}

export class SwarmRateLimitError extends Error {
  name = 'SwarmRateLimitError'
}

export class NoProvidersError extends Error {
  name = 'NoProvidersError'
}

export interface SwarmEvents {
  /** A peer broke the protocol or sent a bad block. */
  onRejected?: (peerId: string, protocol: string, error: Error) => void
}

export interface DownloadProgress {
  /** Leaf bytes held of the file. */
  bytes: number
  total: number
  /** Bytes received from peers in this download. */
  received: number
  peers: number
  blocksFromPeers: number
}

interface Want {
  from: number
  /** Exclusive. */
  to: number
  sequential: boolean
  cursor: number
}

interface Request {
  index: number
  peers: Set<string>
  at: number
  stalled: boolean
  arrived: boolean
}

interface Waiter {
  resolve: (bytes: Uint8Array) => void
  reject: (err: Error) => void
}

/** Errors that are the remote peer's fault: it is banned for them. */
function isViolation (err: unknown): boolean {
  const name = (err as Error)?.name
  return err instanceof SwarmProtocolError || err instanceof BadBlockError || err instanceof SwarmRateLimitError ||
    name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError'
}

async function writeFrame (stream: Stream, msg: SwarmMessage): Promise<void> {
  if (!stream.send(lp.encode.single(encodeMessage(msg)))) await stream.onDrain()
}

class Session {
  readonly peer: string
  readonly stream: Stream
  status: HolderStatus
  leaves: number
  bits: Uint8Array
  readonly inflight = new Set<string>()
  /** Requests we cancelled: the holder may have sent the block before it saw CANCEL. */
  readonly cancelled = new Set<string>()
  readonly dontHave = new Set<string>()
  stalls = 0
  closed = false

  constructor (peer: string, stream: Stream, status: HolderStatus, leaves: number, bits: Uint8Array) {
    this.peer = peer
    this.stream = stream
    this.status = status
    this.leaves = leaves
    this.bits = bits
  }

  has (index: number): boolean {
    if (this.status === 'complete') return true
    return index < this.leaves && getBit(this.bits, index)
  }

  send (msg: SwarmMessage): void {
    if (this.closed) return
    void writeFrame(this.stream, msg).catch(() => {})
  }
}

function delay (ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(t); reject(signal?.reason as Error) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** One root being fetched from the swarm. Created and shared through Swarm.download(). */
export class Download {
  readonly root: CID
  private readonly swarm: Swarm
  private readonly hints: CID[]
  leaves?: Leaf[]
  private leafIndex = new Map<string, number>()
  private have = new Uint8Array(0)
  private avail = new Uint16Array(0)
  private order: number[] = []
  missing = 0
  private readonly sessions = new Map<string, Session>()
  private readonly probing = new Set<string>()
  private readonly probed = new Map<string, number>()
  private readonly requests = new Map<string, Request>()
  private readonly nodeWants = new Set<string>()
  private readonly wants = new Set<Want>()
  private readonly waiters = new Map<string, Waiter[]>()
  private readonly nodeCids = new Map<string, CID>()
  private timer?: ReturnType<typeof setInterval>
  private lastLookup = 0
  private lookingUp = false
  private idleSince = Date.now()
  private noHolderSince = Date.now()
  /** Why the download ended, when it failed. */
  failure?: Error
  closed = false
  received = 0
  blocksFromPeers = 0
  wasted = 0

  constructor (swarm: Swarm, root: CID, hints: CID[]) {
    this.swarm = swarm
    this.root = root
    this.hints = hints
  }

  start (): void {
    this.timer = setInterval(() => { this.tick() }, Math.min(PEER_REFRESH_MS, STALL_TIMEOUT_MS / 4))
    this.timer.unref?.()
    this.refresh()
  }

  get active (): boolean {
    return this.wants.size > 0 || this.waiters.size > 0
  }

  get peerCount (): number { return this.sessions.size }

  idleFor (now: number): number { return this.active ? 0 : now - this.idleSince }

  progress (): DownloadProgress {
    let bytes = 0
    let total = 0
    for (const [i, leaf] of (this.leaves ?? []).entries()) {
      total += leaf.size
      if (getBit(this.have, i)) bytes += leaf.size
    }
    return { bytes, total, received: this.received, peers: this.sessions.size, blocksFromPeers: this.blocksFromPeers }
  }

  /** Fixes the file's leaves (once known); counts what is held already, so a restart resumes. */
  setLeaves (leaves: Leaf[]): void {
    if (this.leaves != null) return
    this.leaves = leaves
    this.have = new Uint8Array(bitfieldBytes(leaves.length))
    this.avail = new Uint16Array(leaves.length)
    this.missing = 0
    leaves.forEach((leaf, i) => {
      this.leafIndex.set(leaf.cid.toString(), i)
      if (this.swarm.blockstore.has(leaf.cid)) setBit(this.have, i)
      else this.missing++
    })
    this.order = leaves.map((_, i) => i)
    for (let i = this.order.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [this.order[i], this.order[j]] = [this.order[j], this.order[i]]
    }
    for (const s of [...this.sessions.values()]) {
      if (s.status !== 'complete' && s.leaves !== 0 && s.leaves !== leaves.length) {
        this.swarm.penalize(s.peer, new SwarmProtocolError(`bitfield names ${s.leaves} leaves; the file has ${leaves.length}`))
        continue
      }
      this.countAvailability(s, 1)
    }
    this.pump()
  }

  private countAvailability (s: Session, delta: 1 | -1): void {
    if (this.leaves == null) return
    for (let i = 0; i < this.leaves.length; i++) if (s.has(i)) this.avail[i] += delta
  }

  /** Leaf indices covering [offset, end) of the file. */
  leafRange (offset: number, end: number): { from: number, to: number } {
    const leaves = this.leaves ?? []
    let from = leaves.length
    let to = 0
    for (let i = 0; i < leaves.length; i++) {
      const l = leaves[i]
      if (l.offset + l.size > offset && l.offset < end) {
        from = Math.min(from, i)
        to = i + 1
      }
    }
    return from < to ? { from, to } : { from: 0, to: 0 }
  }

  addWant (from: number, to: number, sequential: boolean): Want {
    const want: Want = { from, to, sequential, cursor: from }
    this.wants.add(want)
    this.pump()
    return want
  }

  removeWant (want: Want): void {
    this.wants.delete(want)
    if (!this.active) this.idleSince = Date.now()
  }

  /** Missing leaves in [from, to). */
  missingIn (from: number, to: number): number {
    let n = 0
    for (let i = from; i < to; i++) if (!getBit(this.have, i)) n++
    return n
  }

  /** A block of this file: from the store, or from the swarm (a leaf inside `want`, or a node). */
  async getBlock (cid: CID, options: { signal?: AbortSignal, want?: Want } = {}): Promise<Uint8Array> {
    if (this.swarm.blockstore.has(cid)) {
      try {
        return await this.swarm.blockstore.get(cid)
      } catch (err) {
        if (!(err instanceof BlockNotFoundError)) throw err
        const i = this.leafIndex.get(cid.toString())
        if (i != null && getBit(this.have, i)) { this.have[i >> 3] &= ~(0x80 >> (i & 7)); this.missing++ }
      }
    }
    const key = cid.toString()
    const index = this.leafIndex.get(key)
    if (index == null) {
      this.nodeWants.add(key)
      this.nodeCids.set(key, cid)
    } else if (options.want != null) {
      options.want.cursor = index
    }
    const promise = new Promise<Uint8Array>((resolve, reject) => {
      const list = this.waiters.get(key) ?? []
      list.push({ resolve, reject })
      this.waiters.set(key, list)
      const signal = options.signal
      if (signal != null) {
        const onAbort = (): void => {
          const l = this.waiters.get(key)?.filter(w => w.resolve !== resolve) ?? []
          if (l.length === 0) { this.waiters.delete(key); this.nodeWants.delete(key) } else this.waiters.set(key, l)
          if (!this.active) this.idleSince = Date.now()
          reject(signal.reason as Error)
        }
        if (signal.aborted) { onAbort(); return }
        signal.addEventListener('abort', onAbort, { once: true })
      }
    })
    this.pump()
    if (this.sessions.size === 0) this.refresh()
    return await promise
  }

  /** Waits until every leaf in [from, to) is held, reporting progress. */
  async complete (from: number, to: number, options: { signal?: AbortSignal, onProgress?: (p: DownloadProgress) => void } = {}): Promise<void> {
    const want = this.addWant(from, to, false)
    try {
      while (this.missingIn(from, to) > 0) {
        options.signal?.throwIfAborted()
        if (this.closed) throw this.failure ?? new Error('download closed')
        options.onProgress?.(this.progress())
        await Promise.race([delay(200, options.signal), this.swarm.leafEvent(this)])
      }
      options.onProgress?.(this.progress())
    } finally {
      this.removeWant(want)
    }
  }

  private tick (): void {
    const now = Date.now()
    for (const [key, req] of this.requests) {
      if (!req.arrived && !req.stalled && now - req.at > STALL_TIMEOUT_MS) {
        req.stalled = true
        for (const p of req.peers) {
          const s = this.sessions.get(p)
          if (s != null && ++s.stalls >= MAX_STALLS_PER_SESSION) this.dropSession(s)
        }
        void key
      }
    }
    if (this.sessions.size > 0 || !this.active) this.noHolderSince = now
    else if (this.probing.size === 0 && !this.lookingUp && now - this.noHolderSince > NO_HOLDERS_TIMEOUT_MS) {
      this.fail(new NoProvidersError(`no peer holds ${this.root.toString()} (asked connected peers and the DHT for ${Math.round((now - this.noHolderSince) / 1000)} s)`))
      return
    }
    if (this.active) this.refresh()
    this.pump()
  }

  /** Ends the download with an error for everyone waiting on it. */
  fail (err: Error): void {
    this.failure = err
    for (const key of [...this.waiters.keys()]) this.failWaiters(key, err)
    this.close()
    this.swarm.wake()
  }

  /** Looks for more holders: connected peers first, then the DHT. */
  refresh (): void {
    if (this.closed || this.sessions.size + this.probing.size >= MAX_PEERS_PER_DOWNLOAD) return
    const now = Date.now()
    for (const peer of this.swarm.candidatePeers()) {
      if (this.sessions.size + this.probing.size >= MAX_PEERS_PER_DOWNLOAD) break
      const key = peer.toString()
      if (this.sessions.has(key) || this.probing.has(key) || this.swarm.isBanned(key)) continue
      if (now - (this.probed.get(key) ?? 0) < PROBE_BACKOFF_MS) continue
      void this.probe(peer)
    }
    if (!this.lookingUp && now - this.lastLookup > PROVIDER_LOOKUP_INTERVAL_MS && (this.sessions.size === 0 || this.active)) {
      this.lastLookup = now
      this.lookingUp = true
      void this.lookup().finally(() => { this.lookingUp = false })
    }
  }

  private async lookup (): Promise<void> {
    for (const key of [this.root, ...this.hints]) {
      for (const peer of await this.swarm.findProviders(key)) {
        if (this.closed || this.sessions.size + this.probing.size >= MAX_PEERS_PER_DOWNLOAD) return
        const k = peer.toString()
        if (this.sessions.has(k) || this.probing.has(k) || this.swarm.isBanned(k)) continue
        void this.probe(peer)
      }
    }
  }

  private async probe (peer: PeerId): Promise<void> {
    const key = peer.toString()
    this.probing.add(key)
    let stream: Stream | undefined
    try {
      const signal = AbortSignal.timeout(SESSION_OPEN_TIMEOUT_MS)
      stream = await this.swarm.net.dialProtocol(peer, SWARM_PROTOCOL, { signal })
      await writeFrame(stream, { type: 'open', root: this.root })
      const frames = lp.decode(stream, { maxDataLength: MAX_FRAME_BYTES })[Symbol.asyncIterator]()
      const first = await Promise.race([
        frames.next(),
        new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => { reject(new SwarmProtocolError('no BITFIELD in time')) }, { once: true }))
      ])
      if (first.done === true) throw new SwarmProtocolError('stream ended before BITFIELD')
      const msg = decodeMessage(first.value.subarray())
      if (msg.type !== 'bitfield') throw new SwarmProtocolError(`expected BITFIELD, got ${msg.type}`)
      log('probe of %s for %s: %s', key, this.root, msg.status)
      if (msg.status === 'none' || this.closed || this.swarm.isBanned(key)) {
        this.probed.set(key, Date.now())
        await stream.close().catch(() => { stream?.abort(new Error('closed')) })
        return
      }
      if (this.leaves != null && msg.status === 'partial' && msg.leaves !== 0 && msg.leaves !== this.leaves.length) {
        throw new SwarmProtocolError(`bitfield names ${msg.leaves} leaves; the file has ${this.leaves.length}`)
      }
      const session = new Session(key, stream, msg.status, msg.leaves, new Uint8Array(msg.bits))
      this.sessions.set(key, session)
      this.countAvailability(session, 1)
      void this.readLoop(session, frames)
      this.pump()
    } catch (err) {
      log('probe of %s for %s failed: %s', key, this.root, (err as Error).message)
      stream?.abort(err as Error)
      this.probed.set(key, Date.now())
      if (isViolation(err)) this.swarm.penalize(key, err as Error)
    } finally {
      this.probing.delete(key)
    }
  }

  private async readLoop (s: Session, frames: AsyncIterator<{ subarray: () => Uint8Array }>): Promise<void> {
    try {
      while (!s.closed) {
        const next = await frames.next()
        if (next.done === true) break
        const msg = decodeMessage(next.value.subarray())
        await this.onMessage(s, msg)
      }
    } catch (err) {
      log('session with %s for %s ended: %s', s.peer, this.root, (err as Error).message)
      if (!s.closed && isViolation(err)) this.swarm.penalize(s.peer, err as Error)
    }
    this.dropSession(s)
  }

  private async onMessage (s: Session, msg: SwarmMessage): Promise<void> {
    switch (msg.type) {
      case 'block': return await this.onBlock(s, msg.cid, msg.bytes)
      case 'dont-have': {
        const key = msg.cid.toString()
        if (!s.inflight.delete(key)) {
          if (s.cancelled.delete(key)) return
          throw new SwarmProtocolError('DONT_HAVE for a block not requested')
        }
        const index = this.leafIndex.get(key)
        if (index != null) {
          if (s.status === 'complete') { s.status = 'partial'; s.leaves = this.leaves?.length ?? 0; s.bits = new Uint8Array(bitfieldBytes(s.leaves)).fill(0xff) }
          if (index < s.leaves && getBit(s.bits, index)) { s.bits[index >> 3] &= ~(0x80 >> (index & 7)); this.avail[index]-- }
        }
        s.dontHave.add(key)
        this.release(key, s.peer)
        this.pump()
        return
      }
      case 'have': {
        if (s.status === 'complete' || msg.index >= s.leaves || getBit(s.bits, msg.index)) return
        setBit(s.bits, msg.index)
        if (this.leaves != null) this.avail[msg.index]++
        this.pump()
        return
      }
      default:
        throw new SwarmProtocolError(`unexpected ${msg.type} from a holder`)
    }
  }

  private release (key: string, peer: string): void {
    const req = this.requests.get(key)
    if (req == null) return
    req.peers.delete(peer)
    if (req.peers.size === 0 && !req.arrived) this.requests.delete(key)
  }

  private async onBlock (s: Session, cid: CID, bytes: Uint8Array): Promise<void> {
    const key = cid.toString()
    if (!s.inflight.delete(key)) {
      if (!s.cancelled.delete(key)) throw new SwarmProtocolError(`unrequested block ${key}`)
      // Sent before our CANCEL arrived: not a lie, only waste.
      this.received += bytes.length
      this.wasted += bytes.length
      this.swarm.stats.bytesWasted += bytes.length
      return
    }
    this.received += bytes.length
    try {
      await verifyBlock(cid, bytes)
    } catch (err) {
      throw new BadBlockError(`${s.peer} sent bytes that do not match ${key}: ${(err as Error).message}`)
    }
    const req = this.requests.get(key)
    if (req == null || req.arrived) {
      this.wasted += bytes.length
      this.swarm.stats.bytesWasted += bytes.length
      this.pump()
      return
    }
    req.arrived = true
    this.blocksFromPeers++
    this.swarm.stats.blocksFetched++
    this.swarm.stats.bytesFetched += bytes.length
    for (const p of req.peers) {
      if (p === s.peer) continue
      const other = this.sessions.get(p)
      if (other != null && other.inflight.delete(key)) {
        other.send({ type: 'cancel', cid })
        other.cancelled.add(key)
        if (other.cancelled.size > MAX_BLOCKS_IN_FLIGHT_PER_PEER * 4) other.cancelled.delete(other.cancelled.values().next().value as string)
      }
    }
    this.pump()
    try {
      await this.swarm.blockstore.put(cid, bytes, { verified: true })
    } catch (err) {
      this.requests.delete(key)
      this.failWaiters(key, err as Error)
      return
    }
    this.requests.delete(key)
    this.nodeWants.delete(key)
    const index = this.leafIndex.get(key)
    if (index != null && !getBit(this.have, index)) {
      setBit(this.have, index)
      this.missing--
    }
    this.swarm.stored(cid)
    const list = this.waiters.get(key)
    if (list != null) {
      this.waiters.delete(key)
      for (const w of list) w.resolve(bytes)
      if (!this.active) this.idleSince = Date.now()
    }
    this.pump()
  }

  private failWaiters (key: string, err: Error): void {
    const list = this.waiters.get(key)
    this.waiters.delete(key)
    this.nodeWants.delete(key)
    for (const w of list ?? []) w.reject(err)
  }

  dropSession (s: Session): void {
    if (this.sessions.get(s.peer) !== s) return
    s.closed = true
    this.sessions.delete(s.peer)
    this.countAvailability(s, -1)
    for (const key of s.inflight) this.release(key, s.peer)
    s.inflight.clear()
    s.stream.abort(new Error('session dropped'))
    this.probed.set(s.peer, Date.now())
    this.pump()
    if (this.active) this.refresh()
  }

  /** Drops a peer's session (it was banned). */
  dropPeer (peer: string): void {
    const s = this.sessions.get(peer)
    if (s != null) this.dropSession(s)
  }

  private requestFrom (s: Session, key: string, cid: CID, index: number): void {
    let req = this.requests.get(key)
    if (req == null) {
      req = { index, peers: new Set(), at: Date.now(), stalled: false, arrived: false }
      this.requests.set(key, req)
    } else {
      req.at = Date.now()
      req.stalled = false
    }
    req.peers.add(s.peer)
    s.inflight.add(key)
    s.send({ type: 'want', cid })
  }

  /** A request can go to `s`: not arrived, not already asked of s, and free or stalled (or end game). */
  private pickable (key: string, s: Session, endgame: boolean): boolean {
    if (s.inflight.has(key) || s.dontHave.has(key)) return false
    const req = this.requests.get(key)
    if (req == null) return true
    if (req.arrived) return false
    if (req.stalled) return true
    return endgame && req.peers.size < ENDGAME_MAX_REQUESTERS
  }

  private pickLeaf (s: Session, endgame: boolean): number | undefined {
    const leaves = this.leaves
    if (leaves == null) return undefined
    // Streaming reads first: the missing leaf nearest each reader's position.
    for (const w of this.wants) {
      if (!w.sequential) continue
      for (let i = w.cursor; i < w.to; i++) {
        if (getBit(this.have, i) || !s.has(i)) continue
        if (this.pickable(leaves[i].cid.toString(), s, endgame)) return i
      }
    }
    // Whole-file fetches: rarest first, ties in a random order fixed per download.
    let best: number | undefined
    let bestAvail = Infinity
    for (const w of this.wants) {
      if (w.sequential) continue
      for (const i of this.order) {
        if (i < w.from || i >= w.to || getBit(this.have, i) || !s.has(i)) continue
        if (this.avail[i] >= bestAvail) continue
        if (!this.pickable(leaves[i].cid.toString(), s, endgame)) continue
        best = i
        bestAvail = this.avail[i]
      }
    }
    // Leaves waited on outside any want (a read past its range).
    if (best == null) {
      for (const key of this.waiters.keys()) {
        const i = this.leafIndex.get(key)
        if (i != null && !getBit(this.have, i) && s.has(i) && this.pickable(key, s, endgame)) return i
      }
    }
    return best
  }

  /** Picks one request for `s`; false when it has nothing to ask of s. */
  private pumpOne (s: Session, endgame: boolean): boolean {
    // Root and interior nodes first: nothing else can start without them.
    for (const key of this.nodeWants) {
      if (this.pickable(key, s, endgame)) {
        this.requestFrom(s, key, this.nodeCids.get(key) as CID, -1)
        return true
      }
    }
    const i = this.pickLeaf(s, endgame)
    if (i == null) return false
    const leaf = (this.leaves as Leaf[])[i]
    this.requestFrom(s, leaf.cid.toString(), leaf.cid, i)
    return true
  }

  /**
   * Keeps every holder's window full, one request at a time round the holders, within the
   * download's total. Duplicates (the end game) only once few leaves are missing, or for the
   * root and interior nodes, where a second holder's answer saves a round trip.
   */
  private pump (): void {
    if (this.closed) return
    let total = 0
    for (const s of this.sessions.values()) total += s.inflight.size
    const endgames = this.missing <= ENDGAME_MAX_MISSING || this.leaves == null ? [false, true] : [false]
    for (const endgame of endgames) {
      let progressed = true
      while (progressed && total < MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD) {
        progressed = false
        for (const s of this.sessions.values()) {
          if (s.closed || s.inflight.size >= MAX_BLOCKS_IN_FLIGHT_PER_PEER || total >= MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD) continue
          if (this.pumpOne(s, endgame)) { total++; progressed = true }
        }
      }
    }
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    clearInterval(this.timer)
    for (const s of [...this.sessions.values()]) this.dropSession(s)
    for (const key of [...this.waiters.keys()]) this.failWaiters(key, new Error('download closed'))
  }
}

interface Bucket {
  tokens: number
  at: number
}

export interface SwarmInit {
  net: Network
  blockstore: Blockstore
  events?: SwarmEvents
}

/** The swarm service: serves held blocks and runs downloads. */
export class Swarm {
  readonly net: Network
  readonly blockstore: Blockstore
  private readonly events: SwarmEvents
  private readonly downloads = new Map<string, Download>()
  private readonly banned = new Map<string, number>()
  private readonly buckets = new Map<string, Bucket>()
  private readonly leafCache = new Map<string, Map<string, number>>()
  /** Holder sessions by root, to push HAVE as leaves arrive. */
  private readonly serving = new Map<string, Set<Stream>>()
  private readonly leafWaiters = new Set<() => void>()
  private gcTimer?: ReturnType<typeof setInterval>
  private started = false
  /** Counters since start: blocks served to peers, and unique blocks fetched from them. */
  readonly stats = { blocksServed: 0, bytesServed: 0, blocksFetched: 0, bytesFetched: 0, bytesWasted: 0 }

  constructor (init: SwarmInit) {
    this.net = init.net
    this.blockstore = init.blockstore
    this.events = init.events ?? {}
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.net.handle(SWARM_PROTOCOL, (stream, connection) => { void this.serve(stream, connection) }, {
      maxInboundStreams: MAX_SESSIONS_PER_CONNECTION,
      maxOutboundStreams: MAX_SESSIONS_PER_CONNECTION,
      runOnLimitedConnection: false
    })
    this.gcTimer = setInterval(() => { this.closeIdle() }, 1000)
    this.gcTimer.unref?.()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    clearInterval(this.gcTimer)
    for (const d of this.downloads.values()) d.close()
    this.downloads.clear()
    await this.net.unhandle(SWARM_PROTOCOL)
  }

  /** The shared download of a root (created on first use). */
  download (root: CID, hints: CID[] = []): Download {
    const key = root.toString()
    let d = this.downloads.get(key)
    if (d == null || d.closed) {
      d = new Download(this, root, hints)
      this.downloads.set(key, d)
      d.start()
    }
    return d
  }

  private closeIdle (): void {
    const now = Date.now()
    for (const [key, d] of this.downloads) {
      if (d.idleFor(now) > DOWNLOAD_LINGER_MS) {
        d.close()
        this.downloads.delete(key)
      }
    }
    for (const [peer, until] of this.banned) if (until < now) this.banned.delete(peer)
  }

  isBanned (peer: string): boolean {
    const until = this.banned.get(peer)
    return until != null && until > Date.now()
  }

  /** Bans a peer that broke the protocol or lied, drops its sessions and disconnects it. */
  penalize (peer: string, error: Error): void {
    if (!this.isBanned(peer)) this.events.onRejected?.(peer, SWARM_PROTOCOL, error)
    this.banned.set(peer, Date.now() + BAN_MS)
    for (const d of this.downloads.values()) d.dropPeer(peer)
    void this.net.hangUp(peerIdFromString(peer)).catch(() => {})
  }

  /** Connected peers that speak the swarm protocol. */
  * candidatePeers (): Generator<PeerId> {
    for (const conn of this.net.getConnections()) {
      if (conn.status !== 'open' || conn.limits != null) continue
      yield conn.remotePeer
    }
  }

  /** Provider records for a CID in the DHT; dials none of them. */
  async findProviders (cid: CID): Promise<PeerId[]> {
    const out: PeerId[] = []
    const self = this.net.peerId.toString()
    try {
      for await (const event of this.net.services.dht.findProviders(cid, { signal: AbortSignal.timeout(SESSION_OPEN_TIMEOUT_MS * 2) })) {
        if (event.name !== 'PROVIDER') continue
        for (const p of event.providers) {
          if (p.id.toString() === self || out.some(o => o.equals(p.id))) continue
          if (p.multiaddrs.length > 0) await this.net.peerStore.merge(p.id, { multiaddrs: p.multiaddrs }).catch(() => {})
          out.push(p.id)
          if (out.length >= MAX_PROVIDERS_PER_LOOKUP) return out
        }
      }
    } catch {}
    return out
  }

  /** Resolves at the next leaf stored by any download. */
  leafEvent (_d: Download): Promise<void> {
    return new Promise(resolve => { this.leafWaiters.add(resolve) })
  }

  /** Wakes everyone waiting in Download.complete(). */
  wake (): void {
    for (const w of this.leafWaiters) w()
    this.leafWaiters.clear()
  }

  /** Called after a block is stored: wakes waiters and pushes HAVE to holders' sessions. */
  stored (cid: CID): void {
    const key = cid.toString()
    this.wake()
    for (const [root, streams] of this.serving) {
      const index = this.leafCache.get(root)?.get(key)
      if (index == null) continue
      for (const stream of streams) void writeFrame(stream, { type: 'have', index }).catch(() => {})
    }
  }

  /** What we hold of a root, as a holder answers OPEN. */
  async holderBitfield (root: CID): Promise<{ status: HolderStatus, leaves: number, bits: Uint8Array }> {
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
      if (this.leafCache.size >= 256) this.leafCache.delete(this.leafCache.keys().next().value as string)
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

  private take (peer: string): boolean {
    const now = Date.now()
    const b = this.buckets.get(peer) ?? { tokens: REQUEST_BURST, at: now }
    b.tokens = Math.min(REQUEST_BURST, b.tokens + (now - b.at) * REQUESTS_PER_PEER_PER_SECOND / 1000)
    b.at = now
    if (this.buckets.size > 1024 && !this.buckets.has(peer)) this.buckets.clear()
    this.buckets.set(peer, b)
    if (b.tokens < 1) return false
    b.tokens--
    return true
  }

  /** The holder side of one session. */
  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString()
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
          const bf = await this.holderBitfield(msg.root)
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
          if (!this.take(peer)) throw new SwarmRateLimitError(`more than ${REQUESTS_PER_PEER_PER_SECOND} requests per second`)
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
      // A downloader that breaks the protocol loses its session and is reported; holders that
      // lie are banned on the downloading side, where a lie costs something.
      if (isViolation(e)) this.events.onRejected?.(peer, SWARM_PROTOCOL, e)
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

export { BlockVerificationError }
