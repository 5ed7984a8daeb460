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
import { SESSION_OPEN_TIMEOUT_MS } from './swarm-limits.ts'
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

/** Errors that are the remote peer's fault: it is banned (as a holder) or reported (as a downloader). */
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
 * the stream is aborted on any error (SwarmProtocolError when the holder breaks the protocol).
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
      new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => { reject(new SwarmProtocolError('no BITFIELD in time')) }, { once: true }))
    ])
    if (first.done === true) throw new SwarmProtocolError('stream ended before BITFIELD')
    const msg = decodeMessage(first.value.subarray())
    if (msg.type !== 'bitfield') throw new SwarmProtocolError(`expected BITFIELD, got ${msg.type}`)
    return { stream, frames, bitfield: msg }
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
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
  closed = false
  /** Opened over a relayed (limited) connection: its blocks count against the relayed bounds. */
  limited = false
  /** Bytes the relayed connection may carry, where the relay said. */
  limitBytes?: number

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
