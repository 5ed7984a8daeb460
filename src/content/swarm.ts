/**
 * The swarm: fetching a file's blocks from many peers at once, and serving ours to others.
 *
 * A Download (swarm-download.ts) is one root being fetched. It finds holders among connected peers
 * first and in the DHT's provider records, opens one session (stream) per holder, and keeps each
 * holder's window of requests full. Whole-file fetches pick the rarest leaves first (BitTorrent);
 * streaming reads pick the missing leaves nearest their read position first (Spotify). A request
 * that stalls is sent again to another holder; when every missing leaf is already requested, idle
 * holders are asked for the same leaves (end game) and the losers are cancelled. Every block is
 * hashed against its CID before it is stored or returned; a holder that sends a wrong or
 * unrequested block is banned, disconnected and reported, and its requests go to the others.
 *
 * The holder side (swarm-holder.ts) answers OPEN with a bitfield of the root's leaves it holds,
 * then serves WANTs one at a time in order, within a window and a request rate per peer.
 *
 * This file is the service around them: the protocol handler, the shared downloads, the peer bans,
 * the peers and providers downloads may ask, and the counters. It reaches the network only through
 * the ports (ProtocolPort, RoutingPort) and reports bad peers to the RejectSink.
 */
import type { CID } from 'multiformats/cid'
import type { LinkHolder } from '../net/links.ts'
import type { ProtocolPort, RejectSink, RoutingPort } from '../net/ports.ts'
import type { ContentBlockstore } from './blocks.ts'
import { BlockVerificationError } from './reader.ts'
import { Download } from './swarm-download.ts'
import type { DirectPath, DownloadHost, SwarmStats } from './swarm-session.ts'
import { Holder } from './swarm-holder.ts'
import { Bitswap } from './bitswap.ts'
import { BAN_MS, DOWNLOAD_LINGER_MS, MAX_PROVIDERS_PER_LOOKUP, MAX_SESSIONS_PER_CONNECTION, NO_HOLDERS_TIMEOUT_MS, SESSION_OPEN_TIMEOUT_MS } from './swarm-limits.ts'
import { SWARM_PROTOCOL } from './swarm-wire.ts'

export * from './swarm-limits.ts'
export { BadBlockError, DirectPathPendingError, NoProvidersError, SwarmRateLimitError } from './swarm-session.ts'
export type { DirectPath } from './swarm-session.ts'
export { Download } from './swarm-download.ts'
export type { DownloadProgress } from './swarm-session.ts'
export type { SwarmStats } from './swarm-session.ts'
export { BlockVerificationError }

/** How often idle downloads are closed and expired bans forgotten. */
export const SWARM_SWEEP_MS = 1_000

export interface SwarmComponents {
  protocols: ProtocolPort
  routing: RoutingPort
  blockstore: ContentBlockstore
  onRejected: RejectSink
  /** Hole punching, where the node has it: a download waiting for a direct path asks it. */
  directPath?: DirectPath
}

/** The swarm service: serves held blocks and runs downloads. */
export class Swarm implements DownloadHost {
  readonly protocols: ProtocolPort
  readonly blockstore: ContentBlockstore
  readonly directPath?: DirectPath
  private readonly routing: RoutingPort
  private readonly onRejected: RejectSink
  private readonly holder: Holder
  /** Bitswap beside our protocol: served to anyone, asked of holders that do not speak ours. */
  readonly bitswapService: Bitswap
  readonly bitswap: Bitswap['client']
  private readonly downloads = new Map<string, Download>()
  /** Peers banned until a time (they sent a bad block or broke the protocol as holders). */
  private readonly banned = new Map<string, number>()
  private readonly leafWaiters = new Set<() => void>()
  private sweepTimer?: ReturnType<typeof setInterval>
  private started = false
  /** Counters since start: blocks served to peers, and unique blocks fetched from them. */
  readonly stats: SwarmStats = { blocksServed: 0, bytesServed: 0, blocksFetched: 0, bytesFetched: 0, bytesWasted: 0 }

  /** How long a download looks for a holder before NoProvidersError. */
  readonly noHoldersTimeoutMs: number

  constructor (components: SwarmComponents, init: { noHoldersTimeoutMs?: number } = {}) {
    this.noHoldersTimeoutMs = init.noHoldersTimeoutMs ?? NO_HOLDERS_TIMEOUT_MS
    this.protocols = components.protocols
    this.routing = components.routing
    this.blockstore = components.blockstore
    this.onRejected = components.onRejected
    this.directPath = components.directPath
    this.holder = new Holder({
      blockstore: this.blockstore,
      stats: this.stats,
      isBanned: peer => this.isBanned(peer),
      onRejected: this.onRejected
    })
    this.bitswapService = new Bitswap({
      protocols: this.protocols,
      blockstore: this.blockstore,
      onRejected: this.onRejected,
      stats: this.stats,
      isBanned: peer => this.isBanned(peer),
      penalize: (peer, err) => { this.penalize(peer, err) }
    })
    this.bitswap = this.bitswapService.client
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    await this.protocols.handle(SWARM_PROTOCOL, (stream, remote) => { void this.holder.serve(stream, remote) }, {
      maxInboundStreams: MAX_SESSIONS_PER_CONNECTION,
      maxOutboundStreams: MAX_SESSIONS_PER_CONNECTION,
      // Downloaders bound what they take over a relay (RELAYED_CONTENT_MAX_BYTES); the relay its circuits.
      runOnLimitedConnection: true
    })
    await this.bitswapService.start()
    this.sweepTimer = setInterval(() => { this.sweep() }, SWARM_SWEEP_MS)
    this.sweepTimer.unref?.()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    clearInterval(this.sweepTimer)
    for (const d of this.downloads.values()) d.close()
    this.downloads.clear()
    await this.bitswapService.stop()
    await this.protocols.unhandle(SWARM_PROTOCOL)
  }

  /** The shared download of a root (created on first use); `holders` (a link's peers) are asked too. */
  download (root: CID, hints: CID[] = [], holders: LinkHolder[] = []): Download {
    const key = root.toString()
    let d = this.downloads.get(key)
    if (d == null || d.closed) {
      d = new Download(this, root, hints)
      this.downloads.set(key, d)
      d.addHolders(holders)
      d.start()
    } else {
      d.addHolders(holders)
    }
    return d
  }

  /**
   * Stops a download no one waits for any more (its last request went away): cancels what it has
   * in flight and closes its sessions, so no more blocks arrive. One still waited on goes on.
   */
  halt (d: Download): void {
    if (d.active || d.closed) return
    d.close()
    if (this.downloads.get(d.root.toString()) === d) this.downloads.delete(d.root.toString())
  }

  private sweep (): void {
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
    if (!this.isBanned(peer)) this.onRejected(peer, SWARM_PROTOCOL, error)
    this.banned.set(peer, Date.now() + BAN_MS)
    for (const d of this.downloads.values()) d.dropPeer(peer)
    void this.protocols.hangUp(peer).catch(() => {})
  }

  /**
   * Connected peers, over relayed connections too: a download bounds what it takes through a relay.
   * (libp2p opens a new stream on a peer's unlimited connection when it has one, a direct one first.)
   */
  * candidatePeers (): Generator<string> {
    for (const conn of this.protocols.connections()) yield conn.peer
  }

  /** Provider records for a CID in the DHT; dials none of them. */
  async findProviders (cid: CID): Promise<string[]> {
    const out: string[] = []
    const self = this.protocols.peerId
    try {
      for await (const p of this.routing.findProviders(cid, { signal: AbortSignal.timeout(Math.min(SESSION_OPEN_TIMEOUT_MS * 2, this.noHoldersTimeoutMs)) })) {
        if (p.peer === self || out.includes(p.peer)) continue
        out.push(p.peer)
        if (out.length >= MAX_PROVIDERS_PER_LOOKUP) return out
      }
    } catch {}
    return out
  }

  /** Resolves at the next leaf stored by any download. */
  leafEvent (): Promise<void> {
    return new Promise(resolve => { this.leafWaiters.add(resolve) })
  }

  /** Wakes everyone waiting in Download.complete(). */
  wake (): void {
    for (const w of this.leafWaiters) w()
    this.leafWaiters.clear()
  }

  /** Called after a block is stored: wakes waiters and pushes HAVE to holders' sessions. */
  stored (cid: CID): void {
    this.wake()
    this.holder.pushHave(cid)
    this.bitswapService.stored(cid)
  }
}
