/**
 * Dials and streams to a peer held only over a relay (a limited connection). libp2p's connection
 * manager hands back an existing connection only when it is unlimited, so while a peer is held
 * over a relay every dial of it by id (the DHT, gossip, a service opening a stream) or at a
 * relayed address would open one more circuit through the relay: churn that costs the relay a
 * circuit each time and sometimes fails the dial. And libp2p opens a stream whose protocol does not
 * run on limited connections on whatever connection the dial gave, failing with the generic
 * `LimitedConnectionError` (go-libp2p instead waits for a hole-punched connection before it fails).
 *
 * Here:
 * - a dial that could only give another relayed connection takes the one there is (limitedToReuse);
 * - a dial by id of a peer known at an address worth a direct dial (worthDirectDial: public, DNS, a
 *   LAN we are on, loopback when we are on it) dials those addresses alone, and takes the relayed
 *   connection when they fail (remembered for a while, so the next dial does not wait again);
 * - a stream whose protocol cannot run on a limited connection gets a direct path (that dial, or the
 *   WebRTC upgrade within DIRECT_PATH_WAIT_MS) or fails with DirectPathRequiredError.
 * The decisions are pure functions; the wrapper reads the connections only after its awaits.
 */
import { isPrivateIp } from '@libp2p/utils'
import { isPeerId, type Connection, type PeerId, type Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import * as L from './limits.ts'
import { FailedPaths } from './failed-paths.ts'

/** A stream's protocol does not run on a relayed connection and no direct path to the peer opened in time. */
export class DirectPathRequiredError extends Error {
  name = 'DirectPathRequiredError'
}

/** Where we are: our own IP addresses, and (from the transport manager) whether some transport dials an address. */
export interface Here {
  ips: readonly string[]
  dialable?: (ma: Multiaddr) => boolean
}

const DNS = new Set(['dns', 'dns4', 'dns6', 'dnsaddr'])

export function isLoopbackIp (ip: string): boolean { return ip.startsWith('127.') || ip === '::1' }

/** The address's first `bits` bits as a string of bits; undefined for a malformed address. */
function prefixBits (ip: string, bits: number): string | undefined {
  if (ip.includes(':')) {
    const [head, tail = ''] = ip.split('::')
    const h = head === '' ? [] : head.split(':')
    const t = ip.includes('::') ? (tail === '' ? [] : tail.split(':')) : []
    const groups = ip.includes('::') ? [...h, ...new Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h
    if (groups.length !== 8 || groups.some(g => !/^[0-9a-f]{1,4}$/i.test(g))) return undefined
    return groups.map(g => parseInt(g, 16).toString(2).padStart(16, '0')).join('').slice(0, bits)
  }
  const parts = ip.split('.').map(Number)
  if (parts.length !== 4 || parts.some(p => !Number.isInteger(p) || p < 0 || p > 255)) return undefined
  return parts.map(p => p.toString(2).padStart(8, '0')).join('').slice(0, bits)
}

/** Whether two private addresses may be on one LAN: the same family and the same first LAN_PREFIX_BITS_IPV4 (IPV6) bits. */
export function sameLan (a: string, b: string): boolean {
  if (a.includes(':') !== b.includes(':')) return false
  const bits = a.includes(':') ? L.LAN_PREFIX_BITS_IPV6 : L.LAN_PREFIX_BITS_IPV4
  const pa = prefixBits(a, bits)
  return pa != null && pa === prefixBits(b, bits)
}

/**
 * Whether a dial of this address could give a direct connection from here: not through a relay,
 * some transport of ours dials it, and it is a DNS name, a public address, a private address on a
 * LAN we are on, or loopback when we are on loopback ourselves. A private address of another LAN
 * (the home LAN of a peer behind a NAT) and another host's loopback are unreachable from here.
 */
export function worthDirectDial (ma: Multiaddr, here: Here): boolean {
  const cs = ma.getComponents()
  if (cs.some(c => c.name === 'p2p-circuit')) return false
  if (here.dialable != null && !here.dialable(ma)) return false
  const first = cs[0]
  if (first == null) return false
  if (DNS.has(first.name)) return true
  if (first.name !== 'ip4' && first.name !== 'ip6') return here.dialable != null
  const ip = first.value ?? ''
  if (isLoopbackIp(ip)) return here.ips.some(isLoopbackIp)
  if (isPrivateIp(ip) === true) return here.ips.some(own => !isLoopbackIp(own) && sameLan(ip, own))
  return true
}

/**
 * The open limited (relayed) connection a dial should take instead of opening another one, or
 * undefined to let libp2p dial. A dial that could give a direct connection still goes ahead: one
 * naming a WebRTC address (reach's own upgrade) or an address not through a relay; by id, when
 * the peer is known at an address worth a direct dial from here (worthDirectDial).
 */
export function limitedToReuse (connections: Connection[], dialAddrs: Multiaddr[], knownAddrs: Multiaddr[], here: Here = { ips: [] }): Connection | undefined {
  const open = connections.filter(c => c.status === 'open')
  if (open.some(c => c.limits == null)) return undefined
  const limited = open.filter(c => c.limits != null)
  if (limited.length === 0) return undefined
  const viaWebrtc = (ma: Multiaddr): boolean => ma.getComponents().some(c => c.name === 'webrtc' || c.name === 'webrtc-direct')
  if (dialAddrs.length > 0) {
    // Its relayed address again: the connection through that relay (another relay's address is dialled).
    const relays = new Set(dialAddrs.map(ma => viaWebrtc(ma) ? undefined : relayOf(ma)))
    const [relay] = relays
    return relays.size === 1 && relay != null ? limited.find(c => relayOf(c.remoteAddr) === relay) : undefined
  }
  return knownAddrs.some(ma => worthDirectDial(ma, here)) ? undefined : limited[0]
}

/** The relay an address goes through (the peer id before `/p2p-circuit`); undefined for an address not through a relay. */
export function relayOf (ma: Multiaddr): string | undefined {
  const cs = ma.getComponents()
  const circuit = cs.findIndex(c => c.name === 'p2p-circuit')
  return circuit < 0 ? undefined : cs.slice(0, circuit).findLast(c => c.name === 'p2p')?.value ?? ''
}

/** The peer a dial names: a peer id, or the last `/p2p/` of its addresses. */
export function dialTarget (target: PeerId | Multiaddr | Multiaddr[]): { peer?: string, addrs: Multiaddr[] } {
  if (isPeerId(target)) return { peer: target.toString(), addrs: [] }
  const addrs = Array.isArray(target) ? target : [target]
  return { peer: addrs[0]?.getComponents().findLast(c => c.name === 'p2p')?.value, addrs }
}

/** What the wrapper needs of a libp2p node (a fake one in unit tests). */
export interface DialNode {
  getConnections: (peer?: PeerId) => Connection[]
  getMultiaddrs: () => Multiaddr[]
  peerStore: { get: (peer: PeerId) => Promise<{ addresses: Array<{ multiaddr: Multiaddr }> }> }
}

export type DialPlan =
  | { kind: 'reuse', connection: Connection }
  /** By id, while held only over a relay: these addresses alone, then the relayed connection if they fail. */
  | { kind: 'direct', addrs: Multiaddr[] }
  | { kind: 'libp2p' }

/**
 * How to dial `target`. The peer store is read first and the connections after it, so a
 * connection opened or closed while the peer store answered is seen (a list read before the await
 * could hand back a connection that had closed, or miss a direct one that had opened).
 */
export async function planDial (node: DialNode, target: PeerId | Multiaddr | Multiaddr[], here: Here, failedDirect?: { has: (peer: string) => boolean }): Promise<DialPlan> {
  const { peer, addrs } = dialTarget(target)
  if (peer == null) return { kind: 'libp2p' }
  const id = peerIdFromString(peer)
  if (!node.getConnections(id).some(c => c.limits != null)) return { kind: 'libp2p' }
  const known = addrs.length > 0 ? [] : ((await node.peerStore.get(id).catch(() => undefined))?.addresses ?? []).map(a => a.multiaddr)
  const connections = node.getConnections(id)
  const direct = failedDirect?.has(peer) === true ? [] : known.filter(ma => worthDirectDial(ma, here))
  const reuse = limitedToReuse(connections, addrs, direct, here)
  if (reuse != null) return { kind: 'reuse', connection: reuse }
  const limitedOnly = connections.some(c => c.status === 'open' && c.limits != null) && !connections.some(c => c.status === 'open' && c.limits == null)
  if (addrs.length === 0 && limitedOnly && direct.length > 0) return { kind: 'direct', addrs: direct.map(ma => withPeer(ma, peer)) }
  return { kind: 'libp2p' }
}

function withPeer (ma: Multiaddr, peer: string): Multiaddr {
  return ma.getComponents().at(-1)?.name === 'p2p' ? ma : multiaddr(`${ma.toString()}/p2p/${peer}`)
}

/** An open connection to `peer`: an unlimited one when `unlimited`, else a limited one. */
function openTo (node: DialNode, peer: PeerId, unlimited: boolean): Connection | undefined {
  return node.getConnections(peer).find(c => c.status === 'open' && (c.limits == null) === unlimited)
}

type Open = (target: PeerId | Multiaddr | Multiaddr[], options?: { force?: boolean, signal?: AbortSignal }) => Promise<Connection>
type OpenStream = (target: PeerId | Multiaddr | Multiaddr[], protocol: string | string[], options?: { force?: boolean, signal?: AbortSignal, runOnLimitedConnection?: boolean }) => Promise<Stream>

export interface LimitedDialsInit {
  /** Resolves true once an unlimited connection to the peer exists (reach's WebRTC upgrade), false when none will come. */
  waitForDirect: (peer: PeerId, signal: AbortSignal) => Promise<boolean>
  here: () => Here
}

/**
 * Wraps the connection manager's openConnection and openStream (libp2p's dial and dialProtocol,
 * and every service's dials, go through them) as the module's header says.
 */
export function limitedDials (node: DialNode & { components?: unknown }, cm: { openConnection: Open, openStream: OpenStream }, init: LimitedDialsInit): { failedDirect: FailedPaths } {
  const open = cm.openConnection.bind(cm)
  const failedDirect = new FailedPaths(L.DIRECT_DIAL_FAILED_PEERS_MAX, L.DIRECT_DIAL_FAILED_MEMORY_MS)
  cm.openConnection = async (target, options = {}) => {
    if (options.force === true) return await open(target, options)
    const plan = await planDial(node, target, init.here(), failedDirect).catch((): DialPlan => ({ kind: 'libp2p' }))
    if (plan.kind === 'reuse') return plan.connection
    if (plan.kind === 'libp2p') return await open(target, options)
    const peer = dialTarget(plan.addrs).peer as string
    try {
      const conn = await open(plan.addrs, options)
      failedDirect.delete(peer)
      return conn
    } catch (err) {
      if (options.signal?.aborted === true) throw err
      failedDirect.add(peer)
      // Read after the dial: the relayed connection may have closed, or a direct one opened, meanwhile.
      const id = peerIdFromString(peer)
      const now = openTo(node, id, true) ?? openTo(node, id, false)
      if (now != null) return now
      throw err
    }
  }
  cm.openStream = async (target, protocol, options = {}) => {
    const conn = await cm.openConnection(target, options)
    if (conn.limits == null || options.runOnLimitedConnection === true) return await conn.newStream(protocol, options)
    const peer = conn.remotePeer
    const signal = options.signal == null ? AbortSignal.timeout(L.DIRECT_PATH_WAIT_MS) : AbortSignal.any([AbortSignal.timeout(L.DIRECT_PATH_WAIT_MS), options.signal])
    const ok = await init.waitForDirect(peer, signal).catch(() => false)
    options.signal?.throwIfAborted()
    const direct = openTo(node, peer, true)
    if (!ok || direct == null) {
      throw new DirectPathRequiredError(`${[protocol].flat().join(', ')} does not run over a relayed connection, and no direct path to ${peer.toString()} opened within ${L.DIRECT_PATH_WAIT_MS} ms`)
    }
    return await direct.newStream(protocol, options)
  }
  return { failedDirect }
}
