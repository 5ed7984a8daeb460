/**
 * The swarm's wire handling around the codec (swarm-wire.ts): writing frames on a stream, opening a
 * session with a holder (OPEN, then its BITFIELD within a deadline), the downloader's view of one
 * holder's session, the swarm's errors, and which of them are a peer's fault (the verdicts that ban
 * or report it).
 */
import type { Stream } from '@libp2p/interface'
import * as lp from 'it-length-prefixed'
import type { CID } from 'multiformats/cid'
import type { ProtocolPort } from '../net/ports.ts'
import type { ContentBlockstore } from './blocks.ts'
import { MAX_BLOCKS_IN_FLIGHT_PER_PEER, MIN_BLOCKS_IN_FLIGHT_PER_PEER, REQUEST_QUEUE_SECONDS, SESSION_OPEN_TIMEOUT_MS } from './swarm-limits.ts'
import {
  decodeMessage, encodeMessage, getBit, MAX_FRAME_BYTES, SWARM_PROTOCOL, SwarmProtocolError, type HolderStatus, type SwarmMessage
} from './swarm-wire.ts'

/** A holder sent bytes that do not hash to the CID asked for. */
export class BadBlockError extends Error {
  name = 'BadBlockError'
}

/** A downloader asked faster than REQUESTS_PER_PEER_PER_SECOND. */
export class SwarmRateLimitError extends Error {
  name = 'SwarmRateLimitError'
}

/**
 * A session ended before it began: the stream closed or was reset before the holder's BITFIELD
 * (its connection closed, the peer restarted, a relay circuit ended). Not the peer's fault.
 */
export class SessionClosedError extends Error {
  name = 'SessionClosedError'
}

/** A holder did not answer OPEN within SESSION_OPEN_TIMEOUT_MS (or a downloader did not send it): slow, not a lie. */
export class SessionTimeoutError extends Error {
  name = 'SessionTimeoutError'
}

/** A download found no holder for NO_HOLDERS_TIMEOUT_MS. */
export class NoProvidersError extends Error {
  name = 'NoProvidersError'
}

/**
 * A download's holders are reachable only through relays and the file is past what a relay may
 * carry (RELAYED_CONTENT_MAX_BYTES): no direct connection to one of them appeared in time, or
 * none can be made.
 */
export class DirectPathPendingError extends Error {
  name = 'DirectPathPendingError'
}

/** Makes direct connections to peers reached through relays (hole punching), where the node has it. */
export interface DirectPath {
  /** Resolves true once an unlimited connection to `peer` exists, false when none can be made. */
  waitForDirect: (peerId: string, signal: AbortSignal) => Promise<boolean>
}

/**
 * Errors that are the remote peer's fault, provably: bytes that break the protocol or do not hash
 * to what was asked, or requests past the limits. It is banned (as a holder) or reported (as a
 * downloader). A stream that ends or a peer that is slow (SessionClosedError, SessionTimeoutError,
 * a reset, a dial that fails) is none of these: the peer is asked again later.
 */
export function isViolation (err: unknown): boolean {
  const name = (err as Error)?.name
  return err instanceof SwarmProtocolError || err instanceof BadBlockError || err instanceof SwarmRateLimitError ||
    name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError'
}

/** Writes one length-prefixed message, waiting for the stream to drain when its buffer is full. */
export async function writeFrame (stream: Stream, msg: SwarmMessage): Promise<void> {
  if (!stream.send(lp.encode.single(encodeMessage(msg)))) await stream.onDrain()
}

/** Frames off a stream, each decoded as the caller reads it. */
export type FrameReader = AsyncIterator<{ subarray: () => Uint8Array }>

export interface OpenedSession {
  stream: Stream
  frames: FrameReader
  bitfield: Extract<SwarmMessage, { type: 'bitfield' }>
}

/**
 * Dials `peer` on the swarm protocol, sends OPEN for `root` and waits for the holder's BITFIELD;
 * the stream is aborted on any error (SwarmProtocolError when the holder breaks the protocol,
 * SessionClosedError or SessionTimeoutError when it merely went away or was slow).
 */
export async function openSession (protocols: Pick<ProtocolPort, 'dial'>, peer: string, root: CID, addresses?: string[]): Promise<OpenedSession> {
  const signal = AbortSignal.timeout(SESSION_OPEN_TIMEOUT_MS)
  // Over a relay too: the download bounds what it asks of a relayed session (RELAYED_CONTENT_MAX_BYTES).
  const stream = await protocols.dial(peer, SWARM_PROTOCOL, { signal, addresses, runOnLimitedConnection: true })
  try {
    await writeFrame(stream, { type: 'open', root })
    const frames = lp.decode(stream, { maxDataLength: MAX_FRAME_BYTES })[Symbol.asyncIterator]()
    const first = await Promise.race([
      frames.next(),
      new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => { reject(new SessionTimeoutError(`no BITFIELD in ${SESSION_OPEN_TIMEOUT_MS} ms`)) }, { once: true }))
    ])
    if (first.done === true) throw new SessionClosedError('stream ended before BITFIELD')
    const msg = decodeMessage(first.value.subarray())
    if (msg.type !== 'bitfield') throw new SwarmProtocolError(`expected BITFIELD, got ${msg.type}`)
    return { stream, frames, bitfield: msg }
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

/** Weight of the newest sample in a holder's measured rate (an exponential moving average). */
export const RATE_SAMPLE_WEIGHT = 0.25

/**
 * Requests to keep outstanding with a holder that delivers `bytesPerSecond` of `blockBytes`
 * blocks: REQUEST_QUEUE_SECONDS of its rate, between MIN_ and MAX_BLOCKS_IN_FLIGHT_PER_PEER; the
 * largest window while it is not yet measured (0).
 */
export function holderWindow (bytesPerSecond: number, blockBytes: number): number {
  if (!(bytesPerSecond > 0) || !(blockBytes > 0)) return MAX_BLOCKS_IN_FLIGHT_PER_PEER
  const blocks = Math.ceil(bytesPerSecond * REQUEST_QUEUE_SECONDS / blockBytes)
  return Math.max(MIN_BLOCKS_IN_FLIGHT_PER_PEER, Math.min(MAX_BLOCKS_IN_FLIGHT_PER_PEER, blocks))
}

/** One holder's session, as the downloader keeps it: what it holds and what we asked of it. */
export class Session {
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
  /** Blocks it delivered that we asked of it (for the log). */
  blocks = 0
  /** When the session opened (for the log). */
  readonly openedAt = Date.now()
  closed = false
  /** Opened over a relayed (limited) connection: its blocks count against the relayed bounds. */
  limited = false
  /** Bytes the relayed connection may carry, where the relay said. */
  limitBytes?: number
  /** Measured delivery rate (bytes a second while it has requests outstanding); 0 until measured. */
  rate = 0
  /** Largest block it delivered (the unit of its window: a file's leaves, not its small interior nodes). */
  blockBytes = 0
  /** Since when its current run of outstanding requests has been waiting (its last block, or the request that ended an idle spell). */
  private busyFrom = 0

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

  /** Requests to keep outstanding with this holder (holderWindow of its measured rate). */
  window (): number {
    return holderWindow(this.rate, this.blockBytes)
  }

  /** Call before adding a request to `inflight`: a request after an idle spell starts the clock. */
  requested (now: number): void {
    if (this.inflight.size === 0) this.busyFrom = now
  }

  /** A requested block of `bytes` arrived at `now`: updates the measured rate. */
  delivered (bytes: number, now: number): void {
    const elapsed = Math.max(1, now - this.busyFrom) / 1000
    this.busyFrom = now
    this.blocks++
    const sample = bytes / elapsed
    this.rate = this.rate === 0 ? sample : this.rate * (1 - RATE_SAMPLE_WEIGHT) + sample * RATE_SAMPLE_WEIGHT
    this.blockBytes = Math.max(this.blockBytes, bytes)
  }

  send (msg: SwarmMessage): void {
    if (this.closed) return
    void writeFrame(this.stream, msg).catch(() => {})
  }
}

/**
 * The session with the least in flight relative to its window, among those with room and not in
 * `skip` (undefined when none has room). Ties go to the one with fewer in flight, then the first.
 */
export function leastLoaded (sessions: Iterable<Session>, skip: ReadonlySet<Session> = new Set()): Session | undefined {
  let best: Session | undefined
  let bestLoad = Infinity
  for (const s of sessions) {
    if (s.closed || skip.has(s)) continue
    const window = s.window()
    if (s.inflight.size >= window) continue
    const load = s.inflight.size / window
    if (load < bestLoad || (load === bestLoad && best != null && s.inflight.size < best.inflight.size)) {
      best = s
      bestLoad = load
    }
  }
  return best
}

/** Counters since start: blocks served to peers, and unique blocks fetched from them. */
export interface SwarmStats {
  blocksServed: number
  bytesServed: number
  blocksFetched: number
  bytesFetched: number
  bytesWasted: number
}

/** What a download needs of the swarm around it (the Swarm service). */
export interface DownloadHost {
  readonly blockstore: ContentBlockstore
  readonly protocols: Pick<ProtocolPort, 'dial' | 'connections'>
  readonly stats: SwarmStats
  /** How long a download looks for a holder before NoProvidersError. */
  readonly noHoldersTimeoutMs: number
  /** Hole punching, where the node has it: asked for holders reachable only through relays. */
  readonly directPath?: DirectPath
  isBanned: (peer: string) => boolean
  /** Bans a holder that broke the protocol or lied. */
  penalize: (peer: string, error: Error) => void
  /** Connected peers worth asking (over relayed connections too). */
  candidatePeers: () => Iterable<string>
  /** Provider records for a CID in the DHT; dials none of them. */
  findProviders: (cid: CID) => Promise<string[]>
  /** Resolves at the next leaf stored by any download. */
  leafEvent: () => Promise<void>
  /** Wakes everyone waiting in complete(). */
  wake: () => void
  /** A block was stored: wake waiters, tell holders' sessions. */
  stored: (cid: CID) => void
  /** Holders that do not speak our swarm are asked over Bitswap, where the swarm has it (bitswap-client.ts). */
  readonly bitswap?: OtherHolders
}

/** Holders reached over another protocol: a session when the peer holds the root, undefined when not. */
export interface OtherHolders {
  open: (peer: string, root: CID) => Promise<(Session & { messages: () => AsyncIterable<SwarmMessage> }) | undefined>
}

export interface DownloadProgress {
  /** Leaf bytes held of the file. */
  bytes: number
  total: number
  /** Bytes received from peers in this download. */
  received: number
  peers: number
  blocksFromPeers: number
  /** Holders reachable only through relays while the file is too large for them (0: not waiting). */
  waitingForDirectPath: number
}
