/**
 * What one download takes through relays, and its wait for a direct path. A holder reached only
 * over a relayed (limited) connection serves a file up to RELAYED_CONTENT_MAX_BYTES (and never
 * past the bytes the relay said the connection may carry); its index blocks count against
 * RELAYED_INDEX_MAX_BYTES. A larger file whose holders are all relayed waits: the download asks
 * hole punching (the optional DirectPath) for each of them, and reopens a holder's session as soon
 * as an unlimited connection to it exists, since libp2p opens new streams on that one. A wait
 * past its deadline, or with no holder that can be reached directly, is a DirectPathPendingError.
 */
import type { CID } from 'multiformats/cid'
import { MAX_BLOCK_BYTES } from './blocks.ts'
import type { Leaf } from './reader.ts'
import { RELAYED_CONTENT_MAX_BYTES, RELAYED_INDEX_MAX_BYTES } from './swarm-limits.ts'
import { DirectPathPendingError, type DownloadHost, type Session } from './swarm-session.ts'

/** What the relayed bounds read of their download. */
export interface RelayedDownload {
  readonly root: CID
  leaves: () => Leaf[] | undefined
  /** Leaves not held yet. */
  missing: () => number
  /** The download's open sessions. */
  sessions: () => Iterable<Session>
  /** Drops a session so the holder is probed again at once (over its new, direct connection). */
  reopen: (s: Session) => void
}

export class RelayedBounds {
  /** File bytes requested over relayed sessions (each request counts, answered or not). */
  leafBytes = 0
  /** Index bytes requested over relayed sessions (a block's largest size until it arrives). */
  indexBytes = 0
  /** Since when the download has waited for a direct path (0: not waiting). */
  waitingSince = 0
  private readonly d: RelayedDownload
  private readonly host: Pick<DownloadHost, 'protocols' | 'directPath' | 'wake'>
  /** Relayed holders hole punching said it cannot reach directly. */
  private readonly noDirect = new Set<string>()
  private readonly asked = new Set<string>()
  private readonly abort = new AbortController()

  constructor (d: RelayedDownload, host: Pick<DownloadHost, 'protocols' | 'directPath' | 'wake'>) {
    this.d = d
    this.host = host
  }

  /** Marks a new session relayed when every connection to its peer is limited (libp2p picks an unlimited one when there is one). */
  classify (s: Session): void {
    const conns = this.host.protocols.connections(s.peer)
    if (conns.length === 0 || conns.some(c => !c.limited)) return
    s.limited = true
    const bytes = conns.map(c => c.limitBytes).filter(b => b != null)
    if (bytes.length > 0) s.limitBytes = Math.max(...bytes)
  }

  /** Whether the whole file is within what the relayed session `s` may carry. */
  private fits (s: Session): boolean {
    let total = 0
    for (const leaf of this.d.leaves() ?? []) total += leaf.size
    return total <= Math.min(RELAYED_CONTENT_MAX_BYTES, s.limitBytes ?? Infinity)
  }

  /** File bytes the relayed session `s` may still carry for this download. */
  room (s: Session): number {
    return this.fits(s) ? Math.min(RELAYED_CONTENT_MAX_BYTES, s.limitBytes ?? Infinity) - this.leafBytes : 0
  }

  /** Whether an index block may be asked of `s`; counts it if so. */
  takeIndex (s: Session): boolean {
    if (!s.limited) return true
    if (this.indexBytes + MAX_BLOCK_BYTES > RELAYED_INDEX_MAX_BYTES) return false
    this.indexBytes += MAX_BLOCK_BYTES
    return true
  }

  /** An index block arrived over `s`: counts its real size instead of the largest. */
  indexArrived (s: Session, bytes: number): void {
    if (s.limited) this.indexBytes += bytes - MAX_BLOCK_BYTES
  }

  /** Whether a leaf of `size` may be asked of `s`; counts it if so. */
  takeLeaf (s: Session, size: number): boolean {
    if (!s.limited) return true
    if (size > this.room(s)) return false
    this.leafBytes += size
    return true
  }

  /**
   * Holders reachable only through relays, when the file's missing leaves cannot come through them
   * (the file is past the bound, or the download spent it and has nothing in flight) and no direct
   * holder is in the download; 0 otherwise.
   */
  waiting (): number {
    if (this.d.leaves() == null || this.d.missing() === 0) return 0
    let relayed = 0
    for (const s of this.d.sessions()) {
      if (!s.limited) return 0
      if (this.fits(s) && (this.room(s) > 0 || s.inflight.size > 0)) return 0
      relayed++
    }
    return relayed
  }

  /** Why a wait for a direct path (begun at `since`) ends, if it does: its deadline passed, or no holder can be reached directly. */
  failure (since: number, timeoutMs: number): Error | undefined {
    const holders = [...this.d.sessions()].filter(s => s.limited).map(s => s.peer)
    if (holders.length === 0 || this.waitingSince === 0) return undefined
    const names = `${holders.length} holder${holders.length === 1 ? '' : 's'} of ${this.d.root.toString()} (${holders.join(', ')}) reachable only through relays`
    const why = `and the file is past the ${RELAYED_CONTENT_MAX_BYTES} bytes a relay carries`
    if (holders.every(p => this.noDirect.has(p))) return new DirectPathPendingError(`${names}: no direct connection can be made, ${why}`)
    if (Date.now() - since > timeoutMs) return new DirectPathPendingError(`${names}: no direct connection in ${Math.round(timeoutMs / 1000)} s, ${why}`)
    return undefined
  }

  /**
   * Reopens relayed sessions whose peer now has an unlimited connection, and tracks the wait:
   * asks hole punching (if the node has it) once per relayed holder.
   */
  check (): void {
    for (const s of [...this.d.sessions()]) {
      if (s.limited && this.host.protocols.connections(s.peer).some(c => !c.limited)) this.d.reopen(s)
    }
    if (this.waiting() === 0) { this.waitingSince = 0; return }
    if (this.waitingSince === 0) this.waitingSince = Date.now()
    const direct = this.host.directPath
    if (direct == null) return
    for (const s of this.d.sessions()) {
      if (!s.limited || this.asked.has(s.peer)) continue
      this.asked.add(s.peer)
      const peer = s.peer
      void direct.waitForDirect(peer, this.abort.signal).then(ok => {
        if (!ok) this.noDirect.add(peer)
        else this.check()
        this.host.wake()
      }, () => { this.noDirect.add(peer); this.host.wake() })
    }
  }

  /** Stops asking hole punching (the download closed). */
  close (): void {
    this.abort.abort(new Error('download closed'))
  }
}
