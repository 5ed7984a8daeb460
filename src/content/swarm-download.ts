/**
 * One root being fetched from the swarm: the downloader's scheduler (how it finds holders, picks
 * leaves, handles stalls and the end game is told in swarm.ts). It reaches the network and the
 * bans only through its DownloadHost, which the Swarm service is.
 */
import type { Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import type { LinkHolder } from '../net/links.ts'
import { BlockNotFoundError, diskError } from './blocks.ts'
import { verifyBlock, type Leaf } from './reader.ts'
import {
  ENDGAME_MAX_MISSING, ENDGAME_MAX_REQUESTERS, MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD, MAX_HINTED_HOLDERS, MAX_BLOCKS_IN_FLIGHT_PER_PEER,
  DIRECT_PATH_TIMEOUT_MS, MAX_PEERS_PER_DOWNLOAD, MAX_STALLS_PER_SESSION, PEER_REFRESH_MS, PROBE_BACKOFF_MS,
  PROVIDER_LOOKUP_INTERVAL_MS, STALL_TIMEOUT_MS
} from './swarm-limits.ts'
import { RelayedBounds } from './swarm-relayed.ts'
import { BadBlockError, isViolation, leastLoaded, NoProvidersError, openSession, Session, type DownloadHost, type DownloadProgress, type FrameReader } from './swarm-session.ts'
import { bitfieldBytes, decodeMessage, getBit, setBit, SwarmProtocolError, type SwarmMessage } from './swarm-wire.ts'

const log = logger('peerverse:swarm')

export interface Want {
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
  private readonly swarm: DownloadHost
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
  /** Holders a link named (peer -> its addresses): probed beside connected peers and the DHT's providers. */
  private readonly hinted = new Map<string, string[]>()
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
  /** What the download takes through relays, and its wait for a direct path. */
  readonly relayed: RelayedBounds

  constructor (swarm: DownloadHost, root: CID, hints: CID[]) {
    this.swarm = swarm
    this.root = root
    this.hints = hints
    this.relayed = new RelayedBounds({
      root,
      leaves: () => this.leaves,
      missing: () => this.missing,
      sessions: () => this.sessions.values(),
      reopen: s => {
        log('direct connection to %s: reopening its session for %s', s.peer, this.root)
        this.dropSession(s)
        this.probed.delete(s.peer)
      }
    }, swarm)
  }

  start (): void {
    log('download of %s starts', this.root)
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
    return { bytes, total, received: this.received, peers: this.sessions.size, blocksFromPeers: this.blocksFromPeers, waitingForDirectPath: this.relayed.waiting() }
  }

  /** Fixes the file's leaves (once known); counts what is held already, so a restart resumes. */
  setLeaves (leaves: Leaf[]): void {
    if (this.leaves != null) return
    this.leaves = leaves
    log('%s: %d leaves, %d holders', this.root, leaves.length, this.sessions.size)
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
  async complete (from: number, to: number, options: { signal?: AbortSignal, onProgress?: (p: DownloadProgress) => void, directPathTimeoutMs?: number } = {}): Promise<void> {
    const want = this.addWant(from, to, false)
    /** When this wait began waiting for a direct path (its deadline counts from there). */
    let waitingFrom = 0
    try {
      while (this.missingIn(from, to) > 0) {
        options.signal?.throwIfAborted()
        if (this.closed) throw this.failure ?? new Error('download closed')
        this.relayed.check()
        options.onProgress?.(this.progress())
        if (this.relayed.waitingSince === 0) waitingFrom = 0
        else if (waitingFrom === 0) waitingFrom = Date.now()
        const pending = waitingFrom === 0 ? undefined : this.relayed.failure(waitingFrom, options.directPathTimeoutMs ?? DIRECT_PATH_TIMEOUT_MS)
        if (pending != null) throw pending
        await Promise.race([delay(200, options.signal), this.swarm.leafEvent()])
      }
      options.onProgress?.(this.progress())
    } finally {
      this.removeWant(want)
    }
  }

  private tick (): void {
    const now = Date.now()
    for (const req of this.requests.values()) {
      if (!req.arrived && !req.stalled && now - req.at > STALL_TIMEOUT_MS) {
        req.stalled = true
        for (const p of req.peers) {
          const s = this.sessions.get(p)
          if (s != null && ++s.stalls >= MAX_STALLS_PER_SESSION) this.dropSession(s)
        }
      }
    }
    if (this.sessions.size > 0 || !this.active) this.noHolderSince = now
    else if (this.probing.size === 0 && !this.lookingUp && now - this.noHolderSince > this.swarm.noHoldersTimeoutMs) {
      const linked = this.hinted.size > 0 ? `, the link's peers (${[...this.hinted.keys()].join(', ')})` : ''
      this.fail(new NoProvidersError(`no peer holds ${this.root.toString()} (asked connected peers${linked} and the DHT for ${Math.round((now - this.noHolderSince) / 1000)} s)`))
      return
    }
    this.relayed.check()
    if (this.active) this.refresh()
    this.pump()
  }

  /** Ends the download with an error for everyone waiting on it. */
  fail (err: Error): void {
    if (this.closed) return
    this.failure = err
    for (const key of [...this.waiters.keys()]) this.failWaiters(key, err)
    this.close()
    this.swarm.wake()
  }

  /** Makes a link's peers candidate holders (dialled at the link's addresses); they are trusted for nothing. */
  addHolders (holders: LinkHolder[]): void {
    for (const h of holders) {
      if (this.hinted.size >= MAX_HINTED_HOLDERS && !this.hinted.has(h.peer)) break
      this.hinted.set(h.peer, h.addresses)
    }
    if (holders.length > 0) this.refresh()
  }

  /** Looks for more holders: connected peers and a link's peers first, then the DHT. */
  refresh (): void {
    if (this.closed || this.sessions.size + this.probing.size >= MAX_PEERS_PER_DOWNLOAD) return
    const now = Date.now()
    for (const peer of new Set([...this.swarm.candidatePeers(), ...this.hinted.keys()])) {
      if (this.sessions.size + this.probing.size >= MAX_PEERS_PER_DOWNLOAD) break
      if (this.sessions.has(peer) || this.probing.has(peer) || this.swarm.isBanned(peer)) continue
      if (now - (this.probed.get(peer) ?? 0) < PROBE_BACKOFF_MS) continue
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
        if (this.sessions.has(peer) || this.probing.has(peer) || this.swarm.isBanned(peer)) continue
        void this.probe(peer)
      }
    }
  }

  private async probe (peer: string): Promise<void> {
    this.probing.add(peer)
    log('probing %s for %s', peer, this.root)
    let stream: Stream | undefined
    try {
      const opened = await openSession(this.swarm.protocols, peer, this.root, this.hinted.get(peer))
      stream = opened.stream
      const msg = opened.bitfield
      log('probe of %s for %s: %s', peer, this.root, msg.status)
      if (msg.status === 'none' || this.closed || this.swarm.isBanned(peer)) {
        this.probed.set(peer, Date.now())
        await stream.close().catch(() => { stream?.abort(new Error('closed')) })
        return
      }
      if (this.leaves != null && msg.status === 'partial' && msg.leaves !== 0 && msg.leaves !== this.leaves.length) {
        throw new SwarmProtocolError(`bitfield names ${msg.leaves} leaves; the file has ${this.leaves.length}`)
      }
      const session = new Session(peer, stream, msg.status, msg.leaves, new Uint8Array(msg.bits))
      this.relayed.classify(session)
      this.sessions.set(peer, session)
      this.countAvailability(session, 1)
      void this.readLoop(session, opened.frames)
      this.pump()
    } catch (err) {
      log('probe of %s for %s failed: %s', peer, this.root, (err as Error).message)
      stream?.abort(err as Error)
      this.probed.set(peer, Date.now())
      if (isViolation(err)) this.swarm.penalize(peer, err as Error)
    } finally {
      this.probing.delete(peer)
    }
  }

  private async readLoop (s: Session, frames: FrameReader): Promise<void> {
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
    s.delivered(bytes.length, Date.now())
    if (s.blocks === 1) log('first block from %s for %s: %d bytes, %d ms after its session opened', s.peer, this.root, bytes.length, Date.now() - s.openedAt)
    this.received += bytes.length
    if (!this.leafIndex.has(key)) this.relayed.indexArrived(s, bytes.length)
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
      // Our store cannot keep the block (a full disk, a store refusing writes, its size limit):
      // asking for it again would only fetch it again, so the whole download ends here.
      this.requests.delete(key)
      log('storing %s failed; ending the download of %s: %s', key, this.root, (err as Error).message)
      this.fail(diskError(err, `store block ${key}`))
      return
    }
    this.requests.delete(key)
    this.nodeWants.delete(key)
    const index = this.leafIndex.get(key)
    if (index != null && !getBit(this.have, index)) {
      setBit(this.have, index)
      this.missing--
      if (this.missing === 0) {
        for (const h of this.sessions.values()) log('%s done: %s delivered %d blocks, %d KiB/s measured, window %d', this.root, h.peer, h.blocks, Math.round(h.rate / 1024), h.window())
      }
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
    s.requested(Date.now())
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
    // In the end game, among equally rare leaves, the one asked last: it waits deepest in another
    // holder's queue, so it is the one worth asking again, and CANCEL reaches that holder in time.
    let best: number | undefined
    let bestAvail = Infinity
    let bestAt = -Infinity
    for (const w of this.wants) {
      if (w.sequential) continue
      for (const i of this.order) {
        if (i < w.from || i >= w.to || getBit(this.have, i) || !s.has(i)) continue
        if (this.avail[i] > bestAvail || (this.avail[i] === bestAvail && !endgame)) continue
        const key = leaves[i].cid.toString()
        const at = endgame ? this.requests.get(key)?.at ?? Infinity : 0
        if (this.avail[i] === bestAvail && at <= bestAt) continue
        if (!this.pickable(key, s, endgame)) continue
        best = i
        bestAvail = this.avail[i]
        bestAt = at
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
        if (!this.relayed.takeIndex(s)) break
        this.requestFrom(s, key, this.nodeCids.get(key) as CID, -1)
        return true
      }
    }
    const i = this.pickLeaf(s, endgame)
    if (i == null) return false
    const leaf = (this.leaves as Leaf[])[i]
    // Through a relay: only a file within its bounds, and never past them in this download.
    if (!this.relayed.takeLeaf(s, leaf.size)) return false
    this.requestFrom(s, leaf.cid.toString(), leaf.cid, i)
    return true
  }

  /**
   * Keeps every holder's window full (holderWindow: its measured rate x REQUEST_QUEUE_SECONDS),
   * within the download's window (the sum of its holders' windows, at most
   * MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD). Each request goes to the holder with the least in flight
   * for its window, so a freed slot goes to whoever is emptiest and no holder with room starves.
   * Duplicates (the end game) only once every missing leaf is asked of someone or few are
   * missing, or for the root and interior nodes, where a second holder's answer saves a round trip.
   */
  private pump (): void {
    if (this.closed) return
    let total = 0
    let room = 0
    const open: Session[] = []
    for (const s of this.sessions.values()) {
      total += s.inflight.size
      if (s.closed) continue
      open.push(s)
      room += s.window()
    }
    const limit = Math.min(MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD, room)
    const endgames = this.missing <= ENDGAME_MAX_MISSING || this.leaves == null || this.allAsked() ? [false, true] : [false]
    for (const endgame of endgames) {
      const exhausted = new Set<Session>()
      while (total < limit) {
        const s = leastLoaded(open, exhausted)
        if (s == null) break
        if (this.pumpOne(s, endgame)) total++
        else exhausted.add(s)
      }
    }
  }

  /** Every missing leaf is asked of some holder (the end game may begin: nothing new is left to ask). */
  private allAsked (): boolean {
    let asked = 0
    for (const r of this.requests.values()) if (r.index >= 0 && !r.arrived && !r.stalled) asked++
    return asked >= this.missing
  }

  /** Withdraws every request in flight when no one waits for the download (a reader went away). */
  cancelIdle (): void {
    if (this.active || this.closed) return
    for (const s of this.sessions.values()) {
      for (const key of s.inflight) {
        const req = this.requests.get(key)
        if (req == null) continue
        s.send({ type: 'cancel', cid: this.leaves?.[req.index]?.cid ?? this.nodeCids.get(key) as CID })
        s.cancelled.add(key)
        this.release(key, s.peer)
      }
      s.inflight.clear()
    }
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    clearInterval(this.timer)
    this.relayed.close()
    for (const s of [...this.sessions.values()]) this.dropSession(s)
    for (const key of [...this.waiters.keys()]) this.failWaiters(key, new Error('download closed'))
  }
}