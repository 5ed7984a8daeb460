/**
 * GossipSub keeps one stream pair per peer and ignores later connections to a peer it already
 * has. When two peers dial each other at once and the connection carrying the gossip streams is
 * the one that closes, the surviving connection has no gossip at all, and neither side would ever
 * hear the other's subscriptions. This check finds such connections (the peer speaks meshsub but
 * no connection to it carries a meshsub stream) and reconnects the peer so GossipSub starts afresh.
 */
import type { PeerId } from '@libp2p/interface'
import type { Network } from './network.ts'

/** How often connections are checked. */
export const GOSSIP_REPAIR_INTERVAL_MS = 2_000
/** How long a peer may be connected without gossip streams before it is reconnected. */
export const GOSSIP_REPAIR_GRACE_MS = 4_000

const MESHSUB = '/meshsub/'

export class GossipRepair {
  private readonly net: Network
  private timer?: ReturnType<typeof setInterval>
  private readonly missingSince = new Map<string, number>()
  /** Reconnections made, for status and tests. */
  repairs = 0

  constructor (net: Network) {
    this.net = net
  }

  start (): void {
    if (this.timer != null) return
    this.timer = setInterval(() => { void this.check() }, GOSSIP_REPAIR_INTERVAL_MS)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.missingSince.clear()
  }

  private async check (): Promise<void> {
    const now = Date.now()
    const seen = new Set<string>()
    for (const peer of this.net.getPeers()) {
      const key = peer.toString()
      const conns = this.net.getConnections(peer).filter(c => c.status === 'open' && c.limits == null)
      if (conns.length === 0) continue
      if (conns.some(c => c.streams.some(s => s.protocol?.startsWith(MESHSUB) === true))) continue
      const speaksGossip = await this.net.peerStore.get(peer).then(p => p.protocols.some(x => x.startsWith(MESHSUB)), () => false)
      if (!speaksGossip) continue
      seen.add(key)
      const since = this.missingSince.get(key) ?? now
      this.missingSince.set(key, since)
      if (now - since >= GOSSIP_REPAIR_GRACE_MS) {
        this.missingSince.delete(key)
        await this.reconnect(peer)
      }
    }
    for (const key of this.missingSince.keys()) if (!seen.has(key)) this.missingSince.delete(key)
  }

  private async reconnect (peer: PeerId): Promise<void> {
    this.repairs++
    await this.net.hangUp(peer).catch(() => {})
    await this.net.dial(peer).catch(() => {})
  }
}
