/**
 * One root being fetched from the swarm: finding its holders and keeping a session with each,
 * taking their blocks into the store and handing them to whoever waits (how it finds holders, picks
 * leaves, handles stalls and the end game is told in swarm.ts; which block goes to which holder is
 * decided in swarm-schedule.ts). It reaches the network and the bans only through its
 * DownloadHost, which the Swarm service is.
 */
import type { Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import type { CID } from 'multiformats/cid'
import type { LinkHolder } from '../net/links.ts'
import { BlockNotFoundError, diskError } from './blocks.ts'
import { verifyBlock, type Leaf } from './reader.ts'
import {
  DIRECT_PATH_TIMEOUT_MS, MAX_HINTED_HOLDERS, MAX_PEERS_PER_DOWNLOAD, PEER_REFRESH_MS, PROBE_BACKOFF_MS, PROVIDER_LOOKUP_INTERVAL_MS, STALL_TIMEOUT_MS
} from './swarm-limits.ts'
import { RelayedBounds } from './swarm-relayed.ts'
import { Scheduler, type Want } from './swarm-schedule.ts'
import { BadBlockError, isViolation, NoProvidersError, openSession, Session, type DownloadHost, type DownloadProgress, type FrameReader, type OtherHolders } from './swarm-session.ts'
import { bitfieldBytes, decodeMessage, getBit, setBit, SwarmProtocolError, type SwarmMessage } from './swarm-wire.ts'

const log = logger('peerverse:swarm')

export type { Want } from './swarm-schedule.ts'

interface Waiter {
  resolve: (bytes: Uint8Array) => void
  reject: (err: Error) => void
}

/** A swarm session's frames, decoded as they are read. */
async function * decodeFrames (frames: FrameReader): AsyncGenerator<SwarmMessage> {
  while (true) {
    const next = await frames.next()
    if (next.done === true) return
    yield decodeMessage(next.value.subarray())
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
  private readonly swarm: DownloadHost
  private readonly hints: CID[]
  leaves?: Leaf[]
  private leafIndex = new Map<string, number>()
  private have = new Uint8Array(0)
  missing = 0
  private readonly sessions = new Map<string, Session>()
  private readonly probing = new Set<string>()
  private readonly probed = new Map<string, number>()
  /** Holders a link named (peer -> its addresses): probed beside connected peers and the DHT's providers. */
  private readonly hinted = new Map<string, string[]>()
  private readonly waiters = new Map<string, Waiter[]>()
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
  /** What is asked of which holder, and what to ask next. */
  private readonly schedule: Scheduler

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
    this.schedule = new Scheduler({
      leaves: () => this.leaves,
      missing: () => this.missing,
      have: () => this.have,
      leafIndex: key => this.leafIndex.get(key),
      waited: () => this.waiters.keys(),
      sessions: () => this.sessions,
      closed: () => this.closed
    }, this.relayed)
  }

  start (): void {
    log('download of %s starts', this.root)
    this.timer = setInterval(() => { this.tick() }, Math.min(PEER_REFRESH_MS, STALL_TIMEOUT_MS / 4))
    this.timer.unref?.()
    this.refresh()
  }

  get active (): boolean {
    return this.schedule.wants.size > 0 || this.waiters.size > 0
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
    this.schedule.setLeaves(leaves.length)
    this.missing = 0
    leaves.forEach((leaf, i) => {
      this.leafIndex.set(leaf.cid.toString(), i)
      if (this.swarm.blockstore.has(leaf.cid)) setBit(this.have, i)
      else this.missing++
    })
    for (const s of [...this.sessions.values()]) {
      if (s.status !== 'complete' && s.leaves !== 0 && s.leaves !== leaves.length) {
        this.swarm.penalize(s.peer, new SwarmProtocolError(`bitfield names ${s.leaves} leaves; the file has ${leaves.length}`))
        continue
      }
      this.schedule.countAvailability(s, 1)
    }
    this.schedule.pump()
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
    this.schedule.wants.add(want)
    this.schedule.pump()
    return want
  }

  removeWant (want: Want): void {
    this.schedule.wants.delete(want)
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
      this.schedule.wantNode(key, cid)
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
          if (l.length === 0) { this.waiters.delete(key); this.schedule.nodeWants.delete(key) } else this.waiters.set(key, l)
          if (!this.active) this.idleSince = Date.now()
          reject(signal.reason as Error)
        }
        if (signal.aborted) { onAbort(); return }
        signal.addEventListener('abort', onAbort, { once: true })
      }
    })
    this.schedule.pump()
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
    this.schedule.markStalls(now, s => { this.dropSession(s) })
    if (this.sessions.size > 0 || !this.active) this.noHolderSince = now
    else if (this.probing.size === 0 && !this.lookingUp && now - this.noHolderSince > this.swarm.noHoldersTimeoutMs) {
      const linked = this.hinted.size > 0 ? `, the link's peers (${[...this.hinted.keys()].join(', ')})` : ''
      this.fail(new NoProvidersError(`no peer holds ${this.root.toString()} (asked connected peers${linked} and the DHT for ${Math.round((now - this.noHolderSince) / 1000)} s)`))
      return
    }
    this.relayed.check()
    if (this.active) this.refresh()
    this.schedule.pump()
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
      let opened: Awaited<ReturnType<typeof openSession>>
      try {
        opened = await openSession(this.swarm.protocols, peer, this.root, this.hinted.get(peer))
      } catch (err) {
        // A peer that does not speak our swarm (an IPFS program) may still hold the root over Bitswap.
        if ((err as Error).name !== 'UnsupportedProtocolError' || this.swarm.bitswap == null) throw err
        await this.probeOther(peer, this.swarm.bitswap)
        return
      }
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
      this.schedule.countAvailability(session, 1)
      void this.readLoop(session, decodeFrames(opened.frames))
      this.schedule.pump()
    } catch (err) {
      log('probe of %s for %s failed: %s', peer, this.root, (err as Error).message)
      stream?.abort(err as Error)
      this.probed.set(peer, Date.now())
      if (isViolation(err)) this.swarm.penalize(peer, err as Error)
    } finally {
      this.probing.delete(peer)
    }
  }

  /** Asks a peer over another protocol (Bitswap); on HAVE it joins the download as a session like any other. */
  private async probeOther (peer: string, other: OtherHolders): Promise<void> {
    const session = await other.open(peer, this.root)
    if (session == null || this.closed || this.swarm.isBanned(peer) || this.sessions.has(peer)) {
      session?.stream.abort(new Error('not needed'))
      this.probed.set(peer, Date.now())
      return
    }
    this.relayed.classify(session)
    this.sessions.set(peer, session)
    this.schedule.countAvailability(session, 1)
    void this.readLoop(session, session.messages()[Symbol.asyncIterator]())
    this.schedule.pump()
  }

  private async readLoop (s: Session, messages: AsyncIterator<SwarmMessage>): Promise<void> {
    try {
      while (!s.closed) {
        const next = await messages.next()
        if (next.done === true) break
        await this.onMessage(s, next.value)
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
          if (index < s.leaves && getBit(s.bits, index)) { s.bits[index >> 3] &= ~(0x80 >> (index & 7)); this.schedule.avail[index]-- }
        }
        s.dontHave.add(key)
        this.schedule.release(key, s.peer)
        this.schedule.pump()
        return
      }
      case 'have': {
        if (s.status === 'complete' || msg.index >= s.leaves || getBit(s.bits, msg.index)) return
        setBit(s.bits, msg.index)
        if (this.leaves != null) this.schedule.avail[msg.index]++
        this.schedule.pump()
        return
      }
      default:
        throw new SwarmProtocolError(`unexpected ${msg.type} from a holder`)
    }
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
    if (!this.schedule.arrived(s, key, cid)) {
      this.wasted += bytes.length
      this.swarm.stats.bytesWasted += bytes.length
      this.schedule.pump()
      return
    }
    this.blocksFromPeers++
    this.swarm.stats.blocksFetched++
    this.swarm.stats.bytesFetched += bytes.length
    this.schedule.pump()
    try {
      await this.swarm.blockstore.put(cid, bytes, { verified: true })
    } catch (err) {
      // Our store cannot keep the block (a full disk, a store refusing writes, its size limit):
      // asking for it again would only fetch it again, so the whole download ends here.
      this.schedule.requests.delete(key)
      log('storing %s failed; ending the download of %s: %s', key, this.root, (err as Error).message)
      this.fail(diskError(err, `store block ${key}`))
      return
    }
    this.schedule.requests.delete(key)
    this.schedule.nodeWants.delete(key)
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
    this.schedule.pump()
  }

  private failWaiters (key: string, err: Error): void {
    const list = this.waiters.get(key)
    this.waiters.delete(key)
    this.schedule.nodeWants.delete(key)
    for (const w of list ?? []) w.reject(err)
  }

  dropSession (s: Session): void {
    if (this.sessions.get(s.peer) !== s) return
    s.closed = true
    this.sessions.delete(s.peer)
    this.schedule.countAvailability(s, -1)
    for (const key of s.inflight) this.schedule.release(key, s.peer)
    s.inflight.clear()
    s.stream.abort(new Error('session dropped'))
    this.probed.set(s.peer, Date.now())
    this.schedule.pump()
    if (this.active) this.refresh()
  }

  /** Drops a peer's session (it was banned). */
  dropPeer (peer: string): void {
    const s = this.sessions.get(peer)
    if (s != null) this.dropSession(s)
  }

  /** Withdraws every request in flight when no one waits for the download (a reader went away). */
  cancelIdle (): void {
    if (this.active || this.closed) return
    this.schedule.withdrawAll()
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