/**
 * Bitswap beside our swarm, so IPFS programs (Helia, Kubo) and Peerverse peers share blocks both
 * ways. Our swarm stays the fast path between Peerverse peers; Bitswap serves anyone who speaks it
 * and is asked by a download only of holders that do not speak ours (bitswap-client.ts).
 *
 * The server keeps, per peer, the wantlist it sent (at most BITSWAP_MAX_WANTLIST_ENTRIES), answers
 * want-have with HAVE (or DONT_HAVE when asked to), want-block with the block from our store, one
 * block at a time per peer, each written before the next is read; wants for blocks we lack wait
 * for the block to arrive here (or are answered DONT_HAVE). New wants cost a token of a per-peer
 * bucket. Every message is at most BITSWAP_MAX_MESSAGE_BYTES. Input past a limit is refused with a
 * named error and reported to the RejectSink, as our swarm's holder reports a downloader.
 *
 * A peer answers on a stream of its own (Bitswap streams carry messages one way), so each peer we
 * talk to has an Outbox: our wants, presences and blocks to it, packed into messages on one stream
 * that is closed after BITSWAP_SEND_IDLE_MS without traffic.
 */
import type { Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import * as lp from 'it-length-prefixed'
import type { CID } from 'multiformats/cid'
import type { ProtocolPort, RejectSink } from '../net/ports.ts'
import { TokenBuckets } from '../net/rate-limit.ts'
import type { ContentBlockstore } from './blocks.ts'
import { BitswapClient } from './bitswap-client.ts'
import {
  BITSWAP_110, BITSWAP_120, BITSWAP_PROTOCOLS, BitswapProtocolError, blockOverhead, cidPrefix, decodeBitswap, encodeBitswap,
  type BitswapMessage, type Presence, type WantEntry, type WireBlock
} from './bitswap-wire.ts'
import type { SwarmStats } from './swarm-session.ts'

export { BitswapClient, BitswapSession } from './bitswap-client.ts'
export * from './bitswap-wire.ts'

const log = logger('peerverse:bitswap')

/** Largest Bitswap message we read or write (Helia's and boxo's default). */
export const BITSWAP_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
/** Wantlist entries one peer may keep with us; a message that would pass it is refused. */
export const BITSWAP_MAX_WANTLIST_ENTRIES = 1024
/** New wants one peer may send per second (a token bucket of this rate) ... */
export const BITSWAP_WANTS_PER_PEER_PER_SECOND = 2048
/** ... with this burst (a whole wantlist at once). */
export const BITSWAP_WANT_BURST = BITSWAP_MAX_WANTLIST_ENTRIES
/** Concurrent Bitswap streams one connection may open to us, and we to it. */
export const BITSWAP_MAX_STREAMS_PER_CONNECTION = 32
/** Blocks served to one peer in flight: one is written before the next is read from the store. */
export const BITSWAP_MAX_BLOCKS_IN_FLIGHT_PER_PEER = 1
/** Peers whose wantlists the server keeps at once; past it the longest idle is forgotten. */
export const BITSWAP_MAX_PEERS = 1024
/** Our sending stream to a peer is closed after this long without anything to send. */
export const BITSWAP_SEND_IDLE_MS = 2_000
/** Time to open a stream to a peer and write one message. */
export const BITSWAP_SEND_TIMEOUT_MS = 10_000

/** A peer's wantlist would pass BITSWAP_MAX_WANTLIST_ENTRIES. */
export class BitswapWantlistFullError extends Error {
  name = 'BitswapWantlistFullError'
}

/** A peer sent new wants faster than BITSWAP_WANTS_PER_PEER_PER_SECOND. */
export class BitswapRateLimitError extends Error {
  name = 'BitswapRateLimitError'
}

/** A message longer than BITSWAP_MAX_MESSAGE_BYTES. */
export class BitswapMessageTooLargeError extends Error {
  name = 'BitswapMessageTooLargeError'
}

/** Errors that are the sending peer's fault (reported; blocks that lie also ban it, in the client). */
export function isBitswapViolation (err: unknown): boolean {
  return err instanceof BitswapProtocolError || err instanceof BitswapWantlistFullError || err instanceof BitswapRateLimitError ||
    err instanceof BitswapMessageTooLargeError
}

export interface BitswapComponents {
  protocols: ProtocolPort
  blockstore: ContentBlockstore
  onRejected: RejectSink
  stats: SwarmStats
  isBanned: (peer: string) => boolean
  /** Bans a peer that sent a block no one asked it for (the swarm's one ban list). */
  penalize: (peer: string, error: Error) => void
}

interface ServerWant { cid: CID, wantType: 'block' | 'have', sendDontHave: boolean }

/** What the server keeps of one peer: its wantlist and the wants to answer next. */
interface Ledger {
  wants: Map<string, ServerWant>
  queue: string[]
  working: boolean
}

/** Things to send to one peer, packed into messages on one stream. */
class Outbox {
  readonly peer: string
  private readonly host: Bitswap
  private readonly entries = new Map<string, WantEntry>()
  private presences: Presence[] = []
  private readonly blocks: Array<{ block: WireBlock, done: (err?: Error) => void }> = []
  private stream?: Stream
  private protocol = BITSWAP_120
  private running = false
  private idleTimer?: ReturnType<typeof setTimeout>
  closed = false

  constructor (peer: string, host: Bitswap) {
    this.peer = peer
    this.host = host
  }

  want (entry: WantEntry): void {
    this.entries.set(entry.cid.toString(), entry)
    this.kick()
  }

  presence (p: Presence): void {
    this.presences.push(p)
    this.kick()
  }

  /** Resolves once the block is written (the server's one block in flight per peer). */
  async block (cid: CID, data: Uint8Array): Promise<void> {
    return await new Promise((resolve, reject) => {
      this.blocks.push({ block: { prefix: cidPrefix(cid), data }, done: err => { if (err == null) resolve(); else reject(err) } })
      this.kick()
    })
  }

  private kick (): void {
    clearTimeout(this.idleTimer)
    if (!this.running && !this.closed) void this.pump()
  }

  private async pump (): Promise<void> {
    this.running = true
    try {
      while (!this.closed && (this.entries.size > 0 || this.presences.length > 0 || this.blocks.length > 0)) {
        const msg: Partial<BitswapMessage> = {}
        let bytes = 64
        if (this.entries.size > 0) {
          const entries = [...this.entries.values()]
          this.entries.clear()
          // Peers on 1.1.0 know no want-have: they are asked for the block.
          msg.wantlist = { entries: this.protocol === BITSWAP_120 ? entries : entries.map(e => ({ ...e, wantType: 'block', sendDontHave: false })), full: false }
          bytes += entries.length * 48
        }
        if (this.presences.length > 0 && this.protocol === BITSWAP_120) msg.presences = this.presences
        this.presences = []
        const sent: typeof this.blocks = []
        while (this.blocks.length > 0) {
          const next = this.blocks[0]
          const size = blockOverhead(next.block.prefix, next.block.data.length)
          if (sent.length > 0 && bytes + size > BITSWAP_MAX_MESSAGE_BYTES) break
          bytes += size
          sent.push(next)
          this.blocks.shift()
        }
        msg.blocks = sent.map(s => s.block)
        try {
          await this.write(encodeBitswap(msg))
          for (const s of sent) s.done()
        } catch (err) {
          for (const s of [...sent, ...this.blocks.splice(0)]) s.done(err as Error)
          this.entries.clear()
          this.presences = []
          log('sending to %s failed: %s', this.peer, (err as Error).message)
          this.host.sendFailed(this.peer, err as Error)
          return
        }
      }
    } finally {
      this.running = false
    }
    if (!this.closed) {
      this.idleTimer = setTimeout(() => { this.closeStream() }, BITSWAP_SEND_IDLE_MS)
      this.idleTimer.unref?.()
    }
  }

  private async write (bytes: Uint8Array): Promise<void> {
    const signal = AbortSignal.timeout(BITSWAP_SEND_TIMEOUT_MS)
    if (this.stream == null || this.stream.status !== 'open' || this.stream.writeStatus !== 'writable') {
      this.stream = undefined
      try {
        this.stream = await this.host.protocols.dial(this.peer, BITSWAP_120, { signal })
        this.protocol = BITSWAP_120
      } catch (err) {
        if ((err as Error).name !== 'UnsupportedProtocolError') throw err
        this.stream = await this.host.protocols.dial(this.peer, BITSWAP_110, { signal })
        this.protocol = BITSWAP_110
      }
    }
    const stream = this.stream
    try {
      if (!stream.send(lp.encode.single(bytes))) await stream.onDrain({ signal })
    } catch (err) {
      stream.abort(err as Error)
      this.stream = undefined
      throw err
    }
  }

  private closeStream (): void {
    const s = this.stream
    this.stream = undefined
    if (s != null) void s.close().catch(() => { s.abort(new Error('closed')) })
  }

  close (): void {
    this.closed = true
    clearTimeout(this.idleTimer)
    for (const s of this.blocks.splice(0)) s.done(new Error('peer gone'))
    this.closeStream()
  }
}

/** The Bitswap service: the server, the client's sessions, and the outboxes they share. */
export class Bitswap {
  readonly protocols: ProtocolPort
  private readonly blockstore: ContentBlockstore
  private readonly onRejected: RejectSink
  private readonly stats: SwarmStats
  private readonly isBanned: (peer: string) => boolean
  readonly client: BitswapClient
  private readonly ledgers = new Map<string, Ledger>()
  private readonly outboxes = new Map<string, Outbox>()
  private readonly buckets = new TokenBuckets(BITSWAP_WANTS_PER_PEER_PER_SECOND, BITSWAP_WANT_BURST, BITSWAP_MAX_PEERS)
  private offs: Array<() => void> = []
  private started = false

  constructor (components: BitswapComponents) {
    this.protocols = components.protocols
    this.blockstore = components.blockstore
    this.onRejected = components.onRejected
    this.stats = components.stats
    this.isBanned = components.isBanned
    this.client = new BitswapClient({
      outbox: peer => this.outbox(peer),
      isBanned: components.isBanned,
      penalize: components.penalize
    })
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.protocols.handle(BITSWAP_120, (stream, remote) => { void this.serve(stream, remote.peer) }, {
      maxInboundStreams: BITSWAP_MAX_STREAMS_PER_CONNECTION,
      maxOutboundStreams: BITSWAP_MAX_STREAMS_PER_CONNECTION
    })
    for (const p of BITSWAP_PROTOCOLS.slice(1)) {
      await this.protocols.handle(p, (stream, remote) => { void this.serve(stream, remote.peer) }, {
        maxInboundStreams: BITSWAP_MAX_STREAMS_PER_CONNECTION,
        maxOutboundStreams: BITSWAP_MAX_STREAMS_PER_CONNECTION
      })
    }
    this.offs.push(this.protocols.onPeer('disconnect', peer => { this.forget(peer) }))
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    for (const off of this.offs) off()
    this.offs = []
    for (const peer of new Set([...this.ledgers.keys(), ...this.outboxes.keys()])) this.forget(peer)
    for (const p of BITSWAP_PROTOCOLS) await this.protocols.unhandle(p).catch(() => {})
  }

  /** Wantlist entries a peer keeps with us (tests, status). */
  wantlistSize (peer: string): number {
    return this.ledgers.get(peer)?.wants.size ?? 0
  }

  /** The outbox to a peer (created on first use). */
  outbox (peer: string): Outbox {
    let o = this.outboxes.get(peer)
    if (o == null || o.closed) {
      o = new Outbox(peer, this)
      this.outboxes.set(peer, o)
    }
    return o
  }

  /** Sending to a peer failed: its sessions end (a download asks others), its outbox starts afresh. */
  sendFailed (peer: string, err: Error): void {
    this.outboxes.get(peer)?.close()
    this.outboxes.delete(peer)
    this.client.peerGone(peer, err)
  }

  private forget (peer: string): void {
    this.ledgers.delete(peer)
    this.outboxes.get(peer)?.close()
    this.outboxes.delete(peer)
    this.client.peerGone(peer, new Error('disconnected'))
  }

  /** Reads one inbound stream: wantlists for the server, blocks and presences for the client. */
  private async serve (stream: Stream, peer: string): Promise<void> {
    if (this.isBanned(peer)) { stream.abort(new Error('banned')); return }
    try {
      for await (const frame of lp.decode(stream, { maxDataLength: BITSWAP_MAX_MESSAGE_BYTES })) {
        // A message may cancel a whole wantlist and send a new one: twice the limit is the most that can be valid.
        const msg = decodeBitswap(frame.subarray(), 2 * BITSWAP_MAX_WANTLIST_ENTRIES)
        if (msg.wantlist != null) this.takeWants(peer, msg.wantlist)
        if (msg.blocks.length > 0 || msg.presences.length > 0) await this.client.received(peer, msg)
      }
    } catch (err) {
      let e = err as Error
      if (e.name === 'InvalidDataLengthError' || e.name === 'InvalidDataLengthLengthError') e = new BitswapMessageTooLargeError(`a message over ${BITSWAP_MAX_MESSAGE_BYTES} bytes`)
      stream.abort(e)
      if (isBitswapViolation(e)) {
        log('%s broke Bitswap: %s', peer, e.message)
        this.onRejected(peer, BITSWAP_120, e)
      }
    }
  }

  /** Takes a peer's wantlist changes; throws (taking none of the new wants) past the limits. */
  takeWants (peer: string, wantlist: NonNullable<BitswapMessage['wantlist']>): void {
    let l = this.ledgers.get(peer)
    if (l == null) {
      if (this.ledgers.size >= BITSWAP_MAX_PEERS) {
        const oldest = this.ledgers.keys().next().value as string
        this.ledgers.delete(oldest)
      }
      l = { wants: new Map(), queue: [], working: false }
      this.ledgers.set(peer, l)
    } else {
      // Most recently active last: the one forgotten first is the longest idle.
      this.ledgers.delete(peer)
      this.ledgers.set(peer, l)
    }
    if (wantlist.full) l.wants.clear()
    const added: WantEntry[] = []
    for (const e of wantlist.entries) {
      const key = e.cid.toString()
      if (e.cancel) {
        l.wants.delete(key)
        continue
      }
      if (!l.wants.has(key)) added.push(e)
    }
    const fresh = new Set(added.map(e => e.cid.toString())).size
    if (l.wants.size + fresh > BITSWAP_MAX_WANTLIST_ENTRIES) {
      throw new BitswapWantlistFullError(`a wantlist of ${l.wants.size + fresh} entries, over ${BITSWAP_MAX_WANTLIST_ENTRIES}`)
    }
    if (fresh > 0 && !this.buckets.take(peer, fresh)) {
      throw new BitswapRateLimitError(`more than ${BITSWAP_WANTS_PER_PEER_PER_SECOND} wants per second`)
    }
    for (const e of wantlist.entries) {
      if (e.cancel) continue
      const key = e.cid.toString()
      const had = l.wants.get(key)
      // An upgrade from want-have to want-block stands; a later want-have does not undo a want-block.
      l.wants.set(key, { cid: e.cid, wantType: had?.wantType === 'block' ? 'block' : e.wantType, sendDontHave: e.sendDontHave })
      l.queue.push(key)
    }
    if (l.queue.length > 2 * BITSWAP_MAX_WANTLIST_ENTRIES) l.queue = [...l.wants.keys()]
    void this.work(peer, l)
  }

  /** A block was stored here: wants waiting for it are answered. */
  stored (cid: CID): void {
    const key = cid.toString()
    for (const [peer, l] of this.ledgers) {
      if (!l.wants.has(key)) continue
      l.queue.push(key)
      void this.work(peer, l)
    }
  }

  /** Answers a peer's queued wants, one block in flight at a time. */
  private async work (peer: string, l: Ledger): Promise<void> {
    if (l.working) return
    l.working = true
    try {
      while (l.queue.length > 0 && this.ledgers.get(peer) === l) {
        const key = l.queue.shift() as string
        const w = l.wants.get(key)
        if (w == null) continue
        let bytes: Uint8Array | undefined
        if (this.blockstore.has(w.cid)) {
          if (w.wantType === 'have') {
            l.wants.delete(key)
            this.outbox(peer).presence({ cid: w.cid, have: true })
            continue
          }
          try { bytes = await this.blockstore.get(w.cid) } catch {}
        }
        if (bytes == null) {
          // Not here: said so when asked to, else the want waits for the block to arrive.
          if (w.sendDontHave) {
            l.wants.delete(key)
            this.outbox(peer).presence({ cid: w.cid, have: false })
          }
          continue
        }
        if (l.wants.get(key) !== w) continue
        l.wants.delete(key)
        await this.outbox(peer).block(w.cid, bytes)
        this.stats.blocksServed++
        this.stats.bytesServed += bytes.length
      }
    } catch (err) {
      log('serving %s ended: %s', peer, (err as Error).message)
      l.queue = []
    } finally {
      l.working = false
    }
  }
}
