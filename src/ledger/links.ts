/**
 * Direct links: for one protocol, one outbound stream per peer (dialled through the ProtocolPort),
 * opened on first use, carrying length-prefixed frames (framed.ts) written in order from a bounded
 * queue. The ledger sends validators' transaction batches and consensus messages this way
 * (CometBFT's mempool and consensus reactors talk to each peer directly), so a message crosses each
 * link once and no peer forwards it, where GossipSub in a small full mesh delivered each one
 * several times and signed and checked it again.
 *
 * LinkedChannel pairs the protocol with the gossip topic that carries the same frames.
 *
 * A peer that refuses the protocol is not dialled again for `retryMs`. A stream that fails is
 * dropped and opened again on the next send. The caller decides what a send that did not go on an
 * open stream means (the ledger then falls back to GossipSub).
 */
import type { Stream } from '@libp2p/interface'
import { framed, type Framed } from '../net/framed.ts'
import { PROTOCOL_MAX_INBOUND_STREAMS, PROTOCOL_MAX_OUTBOUND_STREAMS, PROTOCOL_TIMEOUT_MS } from '../net/limits.ts'
import type { GossipPort, ProtocolPort, RemotePeer } from '../net/ports.ts'

/**
 * What became of a frame: written on an `open` stream's queue; queued on a stream still being
 * `dialling` (sent once it opens, unless the dial fails); or not sent, the queue being `full` or
 * the peer having `refused` the protocol lately.
 */
export type LinkSend = 'open' | 'dialling' | 'full' | 'refused'

/** Refusals remembered before the expired ones are dropped (they are kept per peer, for `retryMs`). */
export const MAX_REFUSED_KEPT = 1024

export interface DirectLinksOptions {
  /** Largest frame written (the reader's limit). */
  maxFrameBytes: number
  /** Frames waiting per peer at most; past it a send is `full`. */
  maxQueue: number
  /** How long a peer that refused the protocol is left alone. */
  retryMs: number
}

interface Link {
  queue: Uint8Array[]
  writing: boolean
  out?: Framed
  stream?: Stream
}

export class DirectLinks {
  private readonly protocols: Pick<ProtocolPort, 'dial'>
  private readonly protocol: string
  private readonly options: DirectLinksOptions
  private readonly links = new Map<string, Link>()
  private readonly refused = new Map<string, number>()
  private closed = false

  constructor (protocols: Pick<ProtocolPort, 'dial'>, protocol: string, options: DirectLinksOptions) {
    this.protocols = protocols
    this.protocol = protocol
    this.options = options
  }

  /** Queues a frame for `peer`, dialling it first if there is no stream yet. */
  send (id: string, frame: Uint8Array): LinkSend {
    if (this.closed) return 'refused'
    const now = performance.now()
    if ((this.refused.get(id) ?? 0) > now) return 'refused'
    if (this.refused.size > MAX_REFUSED_KEPT) for (const [k, until] of this.refused) if (until <= now) this.refused.delete(k)
    let link = this.links.get(id)
    if (link == null) link = this.open(id)
    if (link.queue.length >= this.options.maxQueue) return 'full'
    link.queue.push(frame)
    void this.pump(id, link)
    return link.out != null ? 'open' : 'dialling'
  }

  private open (id: string): Link {
    const link: Link = { queue: [], writing: false }
    this.links.set(id, link)
    void this.protocols.dial(id, this.protocol, { signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS), runOnLimitedConnection: true }).then(stream => {
      if (this.links.get(id) !== link || this.closed) { stream.abort(new Error('link closed')); return }
      link.stream = stream
      link.out = framed(stream, { maxFrameBytes: this.options.maxFrameBytes })
      stream.addEventListener('close', () => { if (this.links.get(id) === link) this.links.delete(id) })
      void this.pump(id, link)
    }, () => {
      if (this.links.get(id) === link) this.links.delete(id)
      this.refused.set(id, performance.now() + this.options.retryMs)
    })
    return link
  }

  /** Writes one peer's queued frames in order. */
  private async pump (id: string, link: Link): Promise<void> {
    const out = link.out
    if (link.writing || out == null) return
    link.writing = true
    try {
      while (link.queue.length > 0) await out.write(link.queue.shift()!)
    } catch (err) {
      if (this.links.get(id) === link) this.links.delete(id)
      link.stream?.abort(err as Error)
    } finally {
      link.writing = false
    }
  }

  /** Closes every stream; later sends are `refused`. */
  async close (): Promise<void> {
    this.closed = true
    const links = [...this.links.values()]
    this.links.clear()
    // A peer that stopped reading must not hold up our stop: its stream is reset after a while.
    await Promise.all(links.map(async l => { await l.stream?.close({ signal: AbortSignal.timeout(PROTOCOL_TIMEOUT_MS) }).catch(() => { l.stream?.abort(new Error('closed')) }) }))
  }
}

/** Where a channel's frames come in: its gossip topic, and its protocol's inbound streams. */
export interface ChannelHandlers {
  onGossip: (data: Uint8Array) => void
  onStream: (stream: Stream, remote: RemotePeer) => void
}

/**
 * A gossip topic and a stream protocol that carry the same frames: frames come in on both, and go
 * out over direct links (GossipSub being the fallback). Started, halted (nothing more comes in)
 * and closed (the protocol unhandled, the links closed) together.
 */
export class LinkedChannel {
  /** Our outbound streams; undefined before start and after close. */
  links?: DirectLinks
  private readonly ports: { gossip: GossipPort, protocols: ProtocolPort }
  private readonly topic: string
  private readonly protocol: string
  private readonly options: DirectLinksOptions
  private readonly handlers: ChannelHandlers
  private unsubscribe?: () => void

  constructor (ports: { gossip: GossipPort, protocols: ProtocolPort }, topic: string, protocol: string, options: DirectLinksOptions, handlers: ChannelHandlers) {
    this.ports = ports
    this.topic = topic
    this.protocol = protocol
    this.options = options
    this.handlers = handlers
  }

  async start (): Promise<void> {
    if (this.unsubscribe != null) return
    this.unsubscribe = this.ports.gossip.subscribe(this.topic, m => { this.handlers.onGossip(m.data) })
    await this.ports.protocols.handle(this.protocol, this.handlers.onStream, {
      maxInboundStreams: PROTOCOL_MAX_INBOUND_STREAMS,
      maxOutboundStreams: PROTOCOL_MAX_OUTBOUND_STREAMS,
      // Consensus messages and transactions are small: they run over relayed links too.
      runOnLimitedConnection: true
    })
    this.links = new DirectLinks(this.ports.protocols, this.protocol, this.options)
  }

  /** Takes nothing more from the topic; the protocol and links stay until `close`. */
  halt (): void {
    this.unsubscribe?.()
    this.unsubscribe = undefined
  }

  /** Stops handling the protocol and closes our streams. */
  async close (): Promise<void> {
    this.halt()
    const links = this.links
    if (links == null) return
    this.links = undefined
    await this.ports.protocols.unhandle(this.protocol)
    await links.close()
  }

  /** Publishes a frame on the topic. */
  publish (frame: Uint8Array): void {
    void this.ports.gossip.publish(this.topic, frame).catch(() => {})
  }
}
