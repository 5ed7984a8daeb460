/**
 * Finding peers with no central index. Bootstrap addresses are only a way in: they are dialled
 * with backoff until each one answers, and never needed again. After that the peer keeps
 * TARGET_PEERS connections by walking the DHT (lookups for random keys) and dialling what it
 * finds, so losing any one peer, the bootstrap included, loses nothing.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { randomBytes } from '../identity/hash.ts'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
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

  constructor (net: Network, bootstrap: string[], events: DiscoveryEvents = {}) {
    this.net = net
    this.bootstrap = bootstrap.map(a => multiaddr(a))
    this.events = events
  }

  start (): void {
    if (this.controller != null) return
    this.controller = new AbortController()
    for (const addr of this.bootstrap) this.dialBootstrap(addr, BOOTSTRAP_RETRY_MIN_MS)
    this.schedule(() => { void this.walk() }, WALK_INITIAL_INTERVAL_MS)
  }

  stop (): void {
    this.controller?.abort()
    this.controller = undefined
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
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
        const found: string[] = []
        for await (const event of this.net.services.dht.getClosestPeers(key, { signal })) {
          if (event.name === 'FINAL_PEER') found.push(event.peer.id.toString())
        }
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
