/**
 * A space's link: the space id and a few addresses of peers that hold it (`pv:space=<id>&peer=...`,
 * the format of src/net/links.ts), like a magnet link with peers in it. This peer's own shareable
 * addresses come first; then, where known, one address each of a few other members seen recently
 * (from their signed beacons), so the link still opens when this peer is gone.
 */
import { checkLinkPeer, MAX_LINK_PEERS, shareableAddresses, type Link } from '../net/links.ts'
import type { Joined, SpaceCore } from './joined.ts'
import { dialAddrs } from './streams.ts'

/** Other members a space's link names at most, beside this peer. */
export const MAX_LINK_OTHER_HOLDERS = 3

/** Whether an address can go in a link (a multiaddr ending in /p2p/, not too long). */
function linkable (addr: string): boolean {
  try {
    checkLinkPeer(addr)
    return true
  } catch {
    return false
  }
}

/** The link of a space we are in. */
export function spaceLink (core: SpaceCore, j: Joined): Link {
  const self = core.protocols.peerId
  const others: string[] = []
  const members = [...j.presence.members.values()]
    .filter(m => m.peer !== self && m.addrs.length > 0)
    .sort((a, b) => b.seenAt - a.seenAt)
  const seenPeers = new Set<string>()
  for (const m of members) {
    if (others.length >= MAX_LINK_OTHER_HOLDERS) break
    if (seenPeers.has(m.peer)) continue
    const best = shareableAddresses(dialAddrs(m.addrs, m.peer), m.peer, MAX_LINK_PEERS).find(linkable)
    if (best == null) continue
    seenPeers.add(m.peer)
    others.push(best)
  }
  const own = shareableAddresses(core.protocols.addresses(), self, MAX_LINK_PEERS - others.length).filter(linkable)
  return { kind: 'space', target: j.d.id, peers: [...own, ...others] }
}
