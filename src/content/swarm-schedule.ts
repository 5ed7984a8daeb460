/**
 * Which block one download asks of which holder, and when: the download's wants, the table of
 * requests in flight, the leaves' rarity, and the choice of the next request (streaming reads
 * first, then rarest first, the end game's duplicates), each to the least-loaded holder within its
 * window. It reads the rest of its download (leaves held, sessions) through a ScheduledDownload,
 * as the relayed bounds do, and reaches the network only through a session's send().
 */
import type { CID } from 'multiformats/cid'
import type { Leaf } from './reader.ts'
import { ENDGAME_MAX_MISSING, ENDGAME_MAX_REQUESTERS, MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD, MAX_BLOCKS_IN_FLIGHT_PER_PEER, MAX_STALLS_PER_SESSION, STALL_TIMEOUT_MS } from './swarm-limits.ts'
import type { RelayedBounds } from './swarm-relayed.ts'
import { leastLoaded, type Session } from './swarm-session.ts'
import { getBit } from './swarm-wire.ts'

export interface Want {
  from: number
  /** Exclusive. */
  to: number
  sequential: boolean
  cursor: number
}

/** One block asked of one or more holders. */
export interface Request {
  /** Its leaf index; -1 for the root or an interior node. */
  index: number
  peers: Set<string>
  at: number
  stalled: boolean
  arrived: boolean
}

/** What the scheduler reads of its download. */
export interface ScheduledDownload {
  leaves: () => Leaf[] | undefined
  /** Leaves not held yet. */
  missing: () => number
  /** The bitfield of leaves held. */
  have: () => Uint8Array
  /** The leaf index of a block, when it is a leaf. */
  leafIndex: (key: string) => number | undefined
  /** Blocks someone waits on (keys). */
  waited: () => Iterable<string>
  /** The download's sessions, by peer. */
  sessions: () => Map<string, Session>
  closed: () => boolean
}

export class Scheduler {
  readonly requests = new Map<string, Request>()
  readonly wants = new Set<Want>()
  /** The root and interior nodes waited on (keys), asked before any leaf. */
  readonly nodeWants = new Set<string>()
  readonly nodeCids = new Map<string, CID>()
  /** Holders known to hold each leaf. */
  avail = new Uint16Array(0)
  /** Leaf indices in a random order fixed per download (the tie-break of rarest first). */
  private order: number[] = []
  private readonly d: ScheduledDownload
  private readonly relayed: RelayedBounds

  constructor (download: ScheduledDownload, relayed: RelayedBounds) {
    this.d = download
    this.relayed = relayed
  }

  /** Sizes the rarity counts for the file's leaves and fixes their random order. */
  setLeaves (count: number): void {
    this.avail = new Uint16Array(count)
    this.order = Array.from({ length: count }, (_, i) => i)
    for (let i = this.order.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [this.order[i], this.order[j]] = [this.order[j], this.order[i]]
    }
  }

  /** Counts a holder's leaves in (1) or out (-1) of the rarity counts. */
  countAvailability (s: Session, delta: 1 | -1): void {
    const leaves = this.d.leaves()
    if (leaves == null) return
    for (let i = 0; i < leaves.length; i++) if (s.has(i)) this.avail[i] += delta
  }

  /** Waits for the root or an interior node. */
  wantNode (key: string, cid: CID): void {
    this.nodeWants.add(key)
    this.nodeCids.set(key, cid)
  }

  /** Marks requests unanswered past STALL_TIMEOUT_MS stalled; a holder stalling too often is dropped. */
  markStalls (now: number, drop: (s: Session) => void): void {
    const sessions = this.d.sessions()
    for (const req of this.requests.values()) {
      if (!req.arrived && !req.stalled && now - req.at > STALL_TIMEOUT_MS) {
        req.stalled = true
        for (const p of req.peers) {
          const s = sessions.get(p)
          if (s != null && ++s.stalls >= MAX_STALLS_PER_SESSION) drop(s)
        }
      }
    }
  }

  /** Takes a peer off a request; a request no one is asked for any more is forgotten. */
  release (key: string, peer: string): void {
    const req = this.requests.get(key)
    if (req == null) return
    req.peers.delete(peer)
    if (req.peers.size === 0 && !req.arrived) this.requests.delete(key)
  }

  /**
   * Marks a block arrived from `s` and cancels it with every other holder asked. False when it
   * was not asked or has arrived already (the bytes are waste).
   */
  arrived (s: Session, key: string, cid: CID): boolean {
    const req = this.requests.get(key)
    if (req == null || req.arrived) return false
    req.arrived = true
    const sessions = this.d.sessions()
    for (const p of req.peers) {
      if (p === s.peer) continue
      const other = sessions.get(p)
      if (other != null && other.inflight.delete(key)) {
        other.send({ type: 'cancel', cid })
        other.cancelled.add(key)
        if (other.cancelled.size > MAX_BLOCKS_IN_FLIGHT_PER_PEER * 4) other.cancelled.delete(other.cancelled.values().next().value as string)
      }
    }
    return true
  }

  /** Withdraws every request in flight (no one waits for the download any more). */
  withdrawAll (): void {
    const leaves = this.d.leaves()
    for (const s of this.d.sessions().values()) {
      for (const key of s.inflight) {
        const req = this.requests.get(key)
        if (req == null) continue
        s.send({ type: 'cancel', cid: leaves?.[req.index]?.cid ?? this.nodeCids.get(key) as CID })
        s.cancelled.add(key)
        this.release(key, s.peer)
      }
      s.inflight.clear()
    }
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
    const leaves = this.d.leaves()
    if (leaves == null) return undefined
    const have = this.d.have()
    // Streaming reads first: the missing leaf nearest each reader's position.
    for (const w of this.wants) {
      if (!w.sequential) continue
      for (let i = w.cursor; i < w.to; i++) {
        if (getBit(have, i) || !s.has(i)) continue
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
        if (i < w.from || i >= w.to || getBit(have, i) || !s.has(i)) continue
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
      for (const key of this.d.waited()) {
        const i = this.d.leafIndex(key)
        if (i != null && !getBit(have, i) && s.has(i) && this.pickable(key, s, endgame)) return i
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
    const leaf = (this.d.leaves() as Leaf[])[i]
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
  pump (): void {
    if (this.d.closed()) return
    let total = 0
    let room = 0
    const open: Session[] = []
    for (const s of this.d.sessions().values()) {
      total += s.inflight.size
      if (s.closed) continue
      open.push(s)
      room += s.window()
    }
    const limit = Math.min(MAX_BLOCKS_IN_FLIGHT_PER_DOWNLOAD, room)
    const endgames = this.d.missing() <= ENDGAME_MAX_MISSING || this.d.leaves() == null || this.allAsked() ? [false, true] : [false]
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
    return asked >= this.d.missing()
  }
}
