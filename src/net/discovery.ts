/**
 * Finding peers with no central index. Bootstrap addresses are only a way in: they are dialled
 * with backoff until each one answers, and never needed again. After that the peer keeps
 * TARGET_PEERS connections by walking the DHT (lookups for random keys) and dialling what it
 * finds, so losing any one peer, the bootstrap included, loses nothing. The walk asks both DHTs
 * (the WAN one and the LAN one). Peers that mDNS finds on the LAN are remembered (a bounded set)
 * and dialled a few at a time while the peer is below TARGET_PEERS.
 */
import type { PeerId, PeerInfo } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { randomBytes } from '../identity/hash.ts'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { activeDhts } from './dhts.ts'
import type { Network } from './network.ts'

/** Connections the walk aims for; beyond this it stays idle. */
export const TARGET_PEERS = 24
/** Peers dialled per walk step at most. */
export const MAX_DIALS_PER_WALK = 8
/** Time between walk steps once settled, and the first, faster steps. */
export const WALK_INTERVAL_MS = 15_000
export const WALK_INITIAL_INTERVAL_MS = 1_000
/** Bootstrap redial backoff. */
export const BOOTSTRAP_RETRY_MIN_MS = 1_000
export const BOOTSTRAP_RETRY_MAX_MS = 30_000
/** Peers found by mDNS dialled per step at most, and the time between steps. */
export const MDNS_DIALS_PER_INTERVAL = 4
export const MDNS_DIAL_INTERVAL_MS = 1_000
/** Peers found by mDNS and not yet dialled, remembered at most (the oldest is forgotten first). */
export const MDNS_MAX_REMEMBERED = 64

/** A peer found on the LAN, waiting to be dialled. */
export interface LanCandidate {
  peer: PeerId
  addresses: Multiaddr[]
}

/**
 * Peers announced on the LAN (by anyone on it, so by anything): at most `max` remembered, the
 * newest announcement of a peer replacing its older one, this peer itself never.
 */
export class LanCandidates {
  private readonly self: PeerId
  private readonly max: number
  private readonly waiting = new Map<string, LanCandidate>()

  constructor (self: PeerId, max = MDNS_MAX_REMEMBERED) {
    this.self = self
    this.max = max
  }

  get size (): number { return this.waiting.size }

  /** Remembers a peer; returns whether it was taken (not this peer itself). */
  add (peer: PeerId, addresses: Multiaddr[]): boolean {
    if (peer.equals(this.self) || addresses.length === 0) return false
    const key = peer.toString()
    this.waiting.delete(key)
    this.waiting.set(key, { peer, addresses: addresses.slice(0, MAX_ADDRESSES_PER_CANDIDATE) })
    while (this.waiting.size > this.max) {
      const oldest = this.waiting.keys().next().value
      if (oldest == null) break
      this.waiting.delete(oldest)
    }
    return true
  }

  /** Takes up to `count` peers out, oldest first, dropping those `skip` says need no dial. */
  take (count: number, skip: (peer: PeerId) => boolean): LanCandidate[] {
    const out: LanCandidate[] = []
    for (const [key, c] of this.waiting) {
      if (out.length >= count) break
      this.waiting.delete(key)
      if (!skip(c.peer)) out.push(c)
    }
    return out
  }
}

/** Addresses kept per remembered LAN peer. */
export const MAX_ADDRESSES_PER_CANDIDATE = 8

export interface DiscoveryEvents {
  onBootstrapError?: (addr: string, error: Error) => void
  onBootstrapConnected?: (addr: string) => void
}

export class Discovery {
  private readonly net: Network
  private readonly bootstrap: Multiaddr[]
  private readonly events: DiscoveryEvents
  private timers = new Set<ReturnType<typeof setTimeout>>()
  private controller?: AbortController
  private walks = 0
  /** Peers mDNS found, waiting for a dial. */
  readonly lan: LanCandidates
  /** Dials of peers mDNS found, since start. */
  lanDials = 0
  private readonly onLanPeer = (evt: CustomEvent<PeerInfo>): void => {
    try {
      this.lan.add(evt.detail.id, evt.detail.multiaddrs)
    } catch {}
  }

  constructor (net: Network, bootstrap: string[], events: DiscoveryEvents = {}) {
    this.net = net
    this.bootstrap = bootstrap.map(a => multiaddr(a))
    this.events = events
    this.lan = new LanCandidates(net.peerId)
  }

  /** The mDNS service, when the network runs one. */
  private get mdns (): EventTarget | undefined {
    return this.net.services.mdns as EventTarget | undefined
  }

  start (): void {
    if (this.controller != null) return
    this.controller = new AbortController()
    for (const addr of this.bootstrap) this.dialBootstrap(addr, BOOTSTRAP_RETRY_MIN_MS)
    this.schedule(() => { void this.walk() }, WALK_INITIAL_INTERVAL_MS)
    if (this.mdns != null) {
      this.mdns.addEventListener('peer', this.onLanPeer as EventListener)
      const step = (): void => {
        this.dialLanPeers()
        this.schedule(step, MDNS_DIAL_INTERVAL_MS)
      }
      this.schedule(step, MDNS_DIAL_INTERVAL_MS)
    }
  }

  stop (): void {
    this.mdns?.removeEventListener('peer', this.onLanPeer as EventListener)
    this.controller?.abort()
    this.controller = undefined
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
  }

  /**
   * One mDNS step: while below TARGET_PEERS, dials up to MDNS_DIALS_PER_INTERVAL remembered LAN
   * peers that are not connected yet. Returns how many dials it started.
   */
  dialLanPeers (signal = this.controller?.signal): number {
    if (signal == null || this.net.getPeers().length >= TARGET_PEERS) return 0
    const room = Math.min(MDNS_DIALS_PER_INTERVAL, TARGET_PEERS - this.net.getPeers().length)
    const batch = this.lan.take(room, peer => peer.equals(this.net.peerId) || this.net.getConnections(peer).length > 0)
    for (const c of batch) {
      this.lanDials++
      void (async () => {
        await this.net.peerStore.merge(c.peer, { multiaddrs: c.addresses })
        await this.net.dial(c.peer, { signal })
      })().catch(() => {})
    }
    return batch.length
  }

  private schedule (fn: () => void, ms: number): void {
    if (this.controller == null) return
    const t = setTimeout(() => { this.timers.delete(t); fn() }, ms)
    t.unref()
    this.timers.add(t)
  }

  private dialBootstrap (addr: Multiaddr, backoff: number): void {
    const signal = this.controller?.signal
    if (signal == null) return
    const target = addr.getComponents().find(c => c.name === 'p2p')?.value
    if (target != null && target === this.net.peerId.toString()) return
    this.net.dial(addr, { signal }).then(() => {
      this.events.onBootstrapConnected?.(addr.toString())
    }, (err: Error) => {
      if (signal.aborted) return
      this.events.onBootstrapError?.(addr.toString(), err)
      this.schedule(() => { this.dialBootstrap(addr, Math.min(backoff * 2, BOOTSTRAP_RETRY_MAX_MS)) }, backoff)
    })
  }

  /** With no connection at all, try peers remembered from earlier runs (the peer store is on disk). */
  private async dialKnownPeers (signal: AbortSignal): Promise<void> {
    const known = await this.net.peerStore.all({ filters: [p => p.addresses.length > 0], limit: 64 })
    const candidates = known.filter(p => !p.id.equals(this.net.peerId)).slice(0, MAX_DIALS_PER_WALK)
    await Promise.all(candidates.map(async p => this.net.dial(p.id, { signal }).catch(() => {})))
  }

  /** One walk step: a DHT lookup for a random key, dialling the closest peers it turns up. */
  private async walk (): Promise<void> {
    const signal = this.controller?.signal
    if (signal == null) return
    this.walks++
    try {
      if (this.net.getPeers().length === 0) {
        await this.dialKnownPeers(signal)
      } else if (this.net.getPeers().length < TARGET_PEERS) {
        const key = new Uint8Array(randomBytes(32))
        const found = new Set<string>()
        // Both DHTs at once; a walk on one that fails leaves the other's finds.
        await Promise.all(activeDhts(this.net).map(async dht => {
          try {
            for await (const event of dht.getClosestPeers(key, { signal })) {
              if (event.name === 'FINAL_PEER') found.add(event.peer.id.toString())
            }
          } catch {}
        }))
        let dialled = 0
        for (const id of found) {
          if (dialled >= MAX_DIALS_PER_WALK || signal.aborted) break
          const peerId = peerIdFromString(id)
          if (peerId.equals(this.net.peerId) || this.net.getConnections(peerId).length > 0) continue
          dialled++
          await this.net.dial(peerId, { signal }).catch(() => {})
        }
      }
    } catch {
      // A walk that finds nothing (no peers yet, all timed out) is retried on schedule.
    }
    this.schedule(() => { void this.walk() }, this.walks < 10 ? WALK_INITIAL_INTERVAL_MS * this.walks : WALK_INTERVAL_MS)
  }
}
