/**
 * Reachability and what follows from it. A peer works out whether others can dial it
 * (`public`), cannot (`behind-nat`) or does not know yet (`unknown`); it holds relay reservations
 * (a `/p2p-circuit` listener, relays found by the relay transport's random walk over the DHT) only
 * while it is not public; and when it holds only a limited (relayed) connection to a peer that
 * speaks WebRTC signalling it tries, in the background and bounded, to open a direct WebRTC
 * connection through both NATs (ICE, with STUN answered by the relays). New streams then take the
 * direct connection (libp2p's connection manager prefers an unlimited connection) and the relayed
 * one is closed.
 *
 * How reachability is decided:
 * - told (`assume`): a peer configured as public or behind NAT is taken at its word;
 * - `public` once AutoNAT has confirmed a public address of ours (four peers in distinct network
 *   segments dialled it back), or an announce address was configured;
 * - `behind-nat` once REACH_NAT_OBSERVATIONS peers at distinct IP addresses, over direct
 *   connections, saw us at an IP address none of our interfaces has (identify's observed address:
 *   a router translated it); an observed address reaches libp2p only once
 *   OBSERVED_ADDRESS_MIN_WITNESSES such hosts reported it (witnesses.ts);
 * - `unknown` otherwise. While unknown, a peer whose addresses are all private (a home LAN: the
 *   usual place behind a NAT) reserves relay slots at once, so a peer just started behind a NAT is
 *   reachable within seconds; it gives them up once it learns it is public. A peer with a public
 *   address waits for AutoNAT; one that listens on loopback alone needs no relay (whoever can reach
 *   it is on this host).
 */
import { isPrivateIp } from '@libp2p/utils'
import type { Connection, PeerId } from '@libp2p/interface'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import * as L from './limits.ts'
import { FailedPaths } from './failed-paths.ts'
import { isLoopbackIp } from './limited.ts'
import { observedClaim, Witnesses } from './witnesses.ts'
import { extraWebrtcConnections } from './webrtc-limits.ts'
import type { Network } from './network.ts'

export { FailedPaths } from './failed-paths.ts'
export { dialTarget, limitedToReuse } from './limited.ts'

export type Reachability = 'public' | 'behind-nat' | 'unknown'

/** The WebRTC private-to-private signalling protocol (@libp2p/webrtc). */
export const WEBRTC_SIGNALING_PROTOCOL = '/webrtc-signaling/0.0.1'
const CIRCUIT = '/p2p-circuit'

export interface ReachInit {
  /** Take this reachability as given instead of finding it out. */
  assume?: Reachability
  /** Manage a `/p2p-circuit` listener by reachability (default true). Off when listen names `/p2p-circuit` itself. */
  autoRelay?: boolean
  /** Upgrade relayed connections to WebRTC (default true). */
  webrtc?: boolean
}

export interface ReachStatus {
  reachability: Reachability
  /** Peer ids of the relays we hold reservations on. */
  relays: string[]
  relayedAddresses: string[]
  publicAddresses: string[]
  /** Direct-path upgrades of relayed connections: tries made, upgrades that gave a direct connection, ones that gave up, ones running. */
  upgrades: UpgradeCounts
}

export interface UpgradeCounts {
  attempts: number
  succeeded: number
  failed: number
  inProgress: number
  /** Of the last direct (WebRTC) connection to a peer we had a relayed one to, whoever dialled it: ms from the relayed connection's opening to the direct one's verification. */
  lastDirectAfterMs?: number
}

export interface ConnectionCounts { total: number, direct: number, relayed: number, webrtc: number }

export type ConnectionTransport = 'tcp' | 'ws' | 'webrtc' | 'relay'

/** How a connection runs, from its remote address. */
export function connectionTransport (conn: Pick<Connection, 'remoteAddr' | 'limits'>): ConnectionTransport {
  const names = conn.remoteAddr.getComponents().map(c => c.name)
  if (names.includes('webrtc')) return 'webrtc'
  if (names.includes('p2p-circuit') || conn.limits != null) return 'relay'
  if (names.includes('ws') || names.includes('wss')) return 'ws'
  return 'tcp'
}

function ipOf (ma: Multiaddr): string | undefined {
  const c = ma.getComponents()[0]
  return c != null && (c.name === 'ip4' || c.name === 'ip6') ? c.value : undefined
}

/** Public as libp2p counts it (its private-range list), so reachability agrees with DCUtR and the DHT's address filters. */
function isPublicIp (ip: string): boolean {
  return isPrivateIp(ip) === false
}

/** The peer a relayed WebRTC address (`…/p2p/R/p2p-circuit/webrtc/p2p/P`) leads to; undefined for any other address. */
export function relayedWebrtcTarget (ma: Multiaddr): string | undefined {
  const cs = ma.getComponents()
  const circuit = cs.findIndex(c => c.name === 'p2p-circuit')
  if (circuit < 0 || !cs.slice(circuit).some(c => c.name === 'webrtc')) return undefined
  const last = cs.at(-1)
  return circuit < cs.length - 1 && last?.name === 'p2p' ? last.value : undefined
}

export class Reach {
  private readonly node: Network
  private readonly init: ReachInit
  private state: Reachability
  /** Hosts (remote IPs) that saw us at an address we do not have: at most REACH_NAT_OBSERVATIONS are kept, all that is needed. */
  private readonly natWitnesses = new Set<string>()
  /** Our observed addresses and who reported each; libp2p hears of one once enough distinct hosts did. */
  private readonly observed = new Witnesses()
  /** Observed addresses identify passed on (its own filters applied), held until they are confirmed. */
  private readonly pendingObserved = new Map<string, Multiaddr>()
  private addObserved?: (ma: Multiaddr) => void
  private circuitListening = false
  private relayChange: Promise<void> = Promise.resolve()
  private readonly upgrades = new Map<string, Promise<boolean>>()
  private readonly attempts = new Map<string, number>()
  /** Peers whose direct path failed (our tries used up, or as many of theirs reached us unconnected). */
  private readonly failedPaths = new FailedPaths()
  /** Failed WebRTC paths per peer so far: dials of either kind that failed, inbound connections that never carried a ping. */
  private readonly pathFailures = new Map<string, number>()
  private active = 0
  private readonly queue: Array<() => void> = []
  private started = false
  private readonly controller = new AbortController()
  private readonly verified = new WeakMap<Connection, Promise<boolean>>()
  /** WebRTC connections shown to carry data. */
  private readonly working = new WeakSet<Connection>()
  /** When our first relayed connection to each connected peer opened (dropped when the peer disconnects). */
  private readonly relayedSince = new Map<string, number>()
  private readonly counts: Omit<UpgradeCounts, 'inProgress'> = { attempts: 0, succeeded: 0, failed: 0 }
  /** WebRTC signalling streams refused by their per-peer bounds (webrtc-limits). */
  signalingRefused = 0

  constructor (node: Network, init: ReachInit = {}) {
    this.node = node
    this.init = init
    this.state = init.assume ?? 'unknown'
  }

  async start (): Promise<void> {
    if (this.started) return
    this.started = true
    this.gateObservedAddresses()
    this.node.addEventListener('peer:identify', this.onIdentify)
    this.node.addEventListener('self:peer:update', this.onSelfUpdate)
    this.node.addEventListener('connection:open', this.onConnection)
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    this.node.addEventListener('connection:close', this.onConnectionClose)
    this.evaluate()
  }

  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.controller.abort()
    this.node.removeEventListener('peer:identify', this.onIdentify)
    this.node.removeEventListener('self:peer:update', this.onSelfUpdate)
    this.node.removeEventListener('connection:open', this.onConnection)
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
    this.node.removeEventListener('connection:close', this.onConnectionClose)
    await this.relayChange.catch(() => {})
  }

  reachability (): Reachability { return this.state }

  /**
   * Whether a dial should skip this address: a relayed WebRTC address of a peer whose direct path
   * failed. libp2p dials a peer by id again while it holds only a limited connection to it, and
   * tries its relayed WebRTC addresses first; to a peer behind a NAT that punching cannot pass,
   * each such dial would spend a whole address timeout on ICE before the relay is used.
   */
  skipsDial (ma: Multiaddr): boolean {
    const target = relayedWebrtcTarget(ma)
    return target != null && this.failedPaths.has(target)
  }

  /** libp2p's internal components (address and transport managers), which the Libp2p type does not expose. */
  private components (): { addressManager: { getAddressesWithMetadata: () => Array<{ multiaddr: Multiaddr, verified: boolean, type: string }>, confirmObservedAddr: (ma: Multiaddr, options?: { type: 'transport' }) => void, addObservedAddr: (ma: Multiaddr) => void }, transportManager: { getAddrs: () => Multiaddr[], getListeners: () => Array<{ close: () => Promise<void>, constructor: { name: string } }>, listen: (addrs: Multiaddr[]) => Promise<void> } } {
    return (this.node as unknown as { components: ReturnType<Reach['components']> }).components
  }

  status (): ReachStatus {
    const addrs = this.node.getMultiaddrs()
    const relayed = addrs.filter(a => a.toString().includes(CIRCUIT))
    const relays = new Set<string>()
    for (const a of relayed) {
      const id = a.decapsulate(CIRCUIT).getComponents().filter(c => c.name === 'p2p').pop()?.value
      if (id != null) relays.add(id)
    }
    const publicAddresses = this.components().addressManager.getAddressesWithMetadata()
      .filter(a => a.verified && !a.multiaddr.toString().includes(CIRCUIT) && (a.type === 'announce' || (ipOf(a.multiaddr) != null && isPublicIp(ipOf(a.multiaddr) as string))))
      .map(a => a.multiaddr.toString())
    return {
      reachability: this.state,
      relays: [...relays],
      relayedAddresses: relayed.map(a => a.toString()),
      publicAddresses,
      upgrades: { ...this.counts, inProgress: this.upgrades.size }
    }
  }

  connections (): ConnectionCounts {
    const conns = this.node.getConnections()
    const kinds = conns.map(c => connectionTransport(c))
    return {
      total: conns.length,
      direct: kinds.filter(k => k !== 'relay').length,
      relayed: kinds.filter(k => k === 'relay').length,
      webrtc: kinds.filter(k => k === 'webrtc').length
    }
  }

  /** ICE servers for WebRTC: STUN on each relay we hold a reservation on, at its connection's address. */
  iceServers (): Array<{ urls: string }> {
    const out: Array<{ urls: string }> = []
    for (const id of this.status().relays) {
      for (const conn of this.node.getConnections()) {
        if (conn.remotePeer.toString() !== id || conn.limits != null) continue
        const opts = conn.remoteAddr.getComponents()
        const ip = ipOf(conn.remoteAddr)
        const port = opts.find(c => c.name === 'tcp')?.value
        if (ip == null || port == null) continue
        out.push({ urls: `stun:${ip.includes(':') ? `[${ip}]` : ip}:${port}` })
        break
      }
    }
    return out
  }

  /**
   * Resolves true once an unlimited connection to `peerId` exists; false when none will come
   * (no WebRTC on either side, upgrade attempts used up) or `signal` aborts.
   */
  async waitForDirect (peerId: PeerId | string, signal?: AbortSignal): Promise<boolean> {
    const id = peerId.toString()
    const direct = (): boolean => this.node.getConnections().some(c => c.remotePeer.toString() === id && c.limits == null && c.status === 'open')
    if (direct()) return true
    if (this.init.webrtc === false) return false
    const pending = this.upgrades.get(id)
    if (pending != null) {
      const ok = await Promise.race([pending, abortPromise(signal)])
      return ok || direct()
    }
    const conn = this.node.getConnections().find(c => c.remotePeer.toString() === id && c.limits != null)
    if (conn == null) return false
    // The other side may be the one dialling the upgrade: wait for its connection within one upgrade's time.
    return await new Promise<boolean>(resolve => {
      const done = (ok: boolean): void => {
        clearTimeout(timer)
        this.node.removeEventListener('connection:open', onOpen)
        signal?.removeEventListener('abort', onAbort)
        resolve(ok)
      }
      const onOpen = (): void => { if (direct()) done(true) }
      const onAbort = (): void => { done(false) }
      const timer = setTimeout(() => { done(direct()) }, L.UPGRADE_TIMEOUT_MS * L.UPGRADE_MAX_ATTEMPTS)
      this.node.addEventListener('connection:open', onOpen)
      signal?.addEventListener('abort', onAbort)
      if (signal?.aborted === true) done(false)
      // An upgrade of ours may have started meanwhile.
      void this.maybeUpgrade(conn)?.then(ok => { if (ok) done(true) })
    })
  }

  private readonly onIdentify = (evt: CustomEvent<{ peerId: PeerId, observedAddr?: Multiaddr, connection: Connection, protocols: string[] }>): void => {
    const { observedAddr, connection, peerId } = evt.detail
    if (connection.limits == null && observedAddr != null) {
      const seen = ipOf(observedAddr)
      const from = ipOf(connection.remoteAddr)
      if (seen != null && from != null && !isLoopbackIp(from) && !this.ownIps().has(seen) && this.natWitnesses.size < L.REACH_NAT_OBSERVATIONS) {
        this.natWitnesses.add(from)
        this.evaluate()
      }
    }
    if (observedAddr != null) {
      const claim = observedClaim(observedAddr)
      const pending = this.pendingObserved.get(claim)
      if (this.observed.add(claim, ipOf(connection.remoteAddr) ?? peerId.toString()) && pending != null) {
        this.pendingObserved.delete(claim)
        this.addObserved?.(pending)
      }
    }
    if (connection.limits != null) void this.maybeUpgrade(connection)
  }

  /**
   * identify tells libp2p's address manager of every observed address it is sent (after its own
   * filters); here one reaches it only once OBSERVED_ADDRESS_MIN_WITNESSES distinct hosts reported
   * it (counted in onIdentify, which sees who reported it). Until then it waits, among at most
   * OBSERVED_ADDRESS_MAX_CLAIMS.
   */
  private gateObservedAddresses (): void {
    if (this.addObserved != null) return
    const am = this.components().addressManager
    const add = am.addObservedAddr.bind(am)
    this.addObserved = add
    am.addObservedAddr = (ma: Multiaddr) => {
      const claim = observedClaim(ma)
      if (this.observed.confirmed(claim)) { add(ma); return }
      this.pendingObserved.delete(claim)
      this.pendingObserved.set(claim, ma)
      while (this.pendingObserved.size > L.OBSERVED_ADDRESS_MAX_CLAIMS) this.pendingObserved.delete(this.pendingObserved.keys().next().value as string)
    }
  }

  private readonly onSelfUpdate = (): void => {
    this.confirmRelayedAddresses()
    this.evaluate()
  }

  /**
   * Our relayed WebRTC addresses (`/p2p/R/p2p-circuit/webrtc`) carry the relay's public IP, so
   * libp2p takes them for unverified public addresses and AutoNAT asks every peer to dial them
   * back: each dial-back opens one more WebRTC connection through the relay. They are as
   * reachable as the reservation under them, which the relay transport already vouches for.
   */
  private confirmRelayedAddresses (): void {
    const am = this.components().addressManager
    for (const a of am.getAddressesWithMetadata()) {
      // Our relay listener's own addresses only: an observed address that names a relay is someone's claim.
      if (!a.verified && a.type === 'transport' && a.multiaddr.toString().includes(CIRCUIT)) am.confirmObservedAddr(a.multiaddr, { type: 'transport' })
    }
  }

  /**
   * One of several connections to a peer closed (the relayed one once a direct one works, or the
   * relay's limits ended it). GossipSub keeps one outbound stream per peer and opens it only when
   * the peer first connects (libp2p tells a topology once per peer) or the peer opens one to us:
   * if its stream ran on the closed connection, neither side would open another and pubsub between
   * the two would stop while they stay connected. It is given the peer again, on the best
   * connection left.
   */
  private readonly onConnectionClose = (evt: CustomEvent<Connection>): void => {
    const peer = evt.detail.remotePeer
    setTimeout(() => { if (this.started) this.renewPubsub(peer) }, 0)
  }

  private renewPubsub (peer: PeerId): void {
    const open = this.node.getConnections(peer).filter(c => c.status === 'open')
    if (open.length === 0) return
    const pubsub = this.node.services.pubsub as unknown as { streamsOutbound?: Map<string, { rawStream: unknown }>, onPeerConnected?: (peer: PeerId, conn: Connection) => void }
    const id = peer.toString()
    const out = pubsub?.streamsOutbound?.get(id)
    if (out != null && open.some(c => c.streams.includes(out.rawStream as never))) return
    if (out != null) pubsub.streamsOutbound?.delete(id)
    const best = open.find(c => c.limits == null) ?? open[0]
    pubsub?.onPeerConnected?.call(pubsub, peer, best)
  }

  /** A peer gone: its upgrade tries start afresh when we meet again, and neither map outgrows the peers we are connected to. */
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    this.relayedSince.delete(id)
    this.attempts.delete(id)
  }

  private readonly onConnection = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    if (conn.limits == null && connectionTransport(conn) === 'webrtc') {
      void this.verify(conn).then(ok => {
        if (!ok) {
          if (conn.direction === 'inbound') this.pathFailed(conn.remotePeer.toString())
          return
        }
        this.failedPaths.delete(conn.remotePeer.toString())
        this.pathFailures.delete(conn.remotePeer.toString())
        const since = this.relayedSince.get(conn.remotePeer.toString())
        if (since != null) this.counts.lastDirectAfterMs = Date.now() - since
        this.closeRelayed(conn.remotePeer)
        // Two upgrades that crossed leave two WebRTC connections: both sides close the same extras.
        this.working.add(conn)
        const webrtc = this.node.getConnections(conn.remotePeer).filter(c => this.working.has(c))
        for (const extra of extraWebrtcConnections(webrtc, this.node.peerId.toString())) void extra.close().catch(() => {})
      })
    } else if (conn.limits != null) {
      const id = conn.remotePeer.toString()
      this.relayedSince.set(id, Math.min(this.relayedSince.get(id) ?? Infinity, conn.timeline.open))
    }
  }

  /**
   * Whether a new WebRTC connection carries data: one ping over it, within
   * UPGRADE_VERIFY_TIMEOUT_MS. The answering side of @libp2p/webrtc's signalling hands libp2p a
   * connection as soon as the signalling stream ends, whether or not ICE connected (the dialling
   * side gave up, or never got through a symmetric NAT); such a connection looks direct and
   * unlimited, so it would win every new stream, and it would close the relayed connection that
   * works. One whose peer connection is not connected, or that fails the ping, is closed instead;
   * the relayed one stays.
   */
  private verify (conn: Connection): Promise<boolean> {
    let p = this.verified.get(conn)
    if (p == null && iceState(conn) !== undefined && iceState(conn) !== 'connected') {
      // Handed over before ICE connected: it never carries anything.
      void conn.close().catch(() => {})
      p = Promise.resolve(false)
      this.verified.set(conn, p)
    }
    if (p == null) {
      p = pingOver(conn, AbortSignal.any([AbortSignal.timeout(L.UPGRADE_VERIFY_TIMEOUT_MS), this.controller.signal]))
        .then(() => true, () => {
          void conn.close().catch(() => {})
          return false
        })
      this.verified.set(conn, p)
    }
    return p
  }

  /** Whether every IP we listen on is private and at least one is not loopback (a host on a home LAN). */
  private privateOnly (): boolean {
    const ips = [...this.ownIps()]
    return ips.some(ip => !isLoopbackIp(ip)) && ips.every(ip => !isPublicIp(ip))
  }

  private ownIps (): Set<string> {
    const ips = new Set<string>()
    for (const a of this.components().transportManager.getAddrs()) {
      const ip = ipOf(a)
      if (ip != null) ips.add(ip)
    }
    return ips
  }

  private evaluate (): void {
    if (!this.started) return
    if (this.init.assume == null) {
      const hasPublic = this.status().publicAddresses.length > 0
      this.state = hasPublic ? 'public' : this.natWitnesses.size >= L.REACH_NAT_OBSERVATIONS ? 'behind-nat' : 'unknown'
    }
    if (this.init.autoRelay === false) return
    const want = this.state === 'behind-nat' || (this.state === 'unknown' && this.privateOnly())
    if (want === this.circuitListening) return
    this.circuitListening = want
    this.relayChange = this.relayChange.then(async () => { await this.setCircuitListener(want) }).catch(() => {})
  }

  private async setCircuitListener (on: boolean): Promise<void> {
    const tm = this.components().transportManager
    const current = tm.getListeners().filter(l => l.constructor.name === 'CircuitRelayTransportListener')
    if (on && current.length === 0 && this.started) await tm.listen([multiaddr(CIRCUIT)])
    if (!on) for (const l of current) await l.close()
  }

  /** A WebRTC dial to this relayed WebRTC address failed (libp2p's own dials by peer id included). */
  webrtcDialFailed (ma: Multiaddr): void {
    const target = relayedWebrtcTarget(ma)
    if (target != null) this.pathFailed(target)
  }

  /** A direct path to `id` failed (a WebRTC dial, or an inbound WebRTC connection that never carried anything); after UPGRADE_MAX_ATTEMPTS of them it counts as failed. */
  private pathFailed (id: string): void {
    const n = (this.pathFailures.get(id) ?? 0) + 1
    this.pathFailures.delete(id)
    if (n >= L.UPGRADE_MAX_ATTEMPTS) { this.failedPaths.add(id); return }
    this.pathFailures.set(id, n)
    while (this.pathFailures.size > L.UPGRADE_FAILED_PEERS_MAX) this.pathFailures.delete(this.pathFailures.keys().next().value as string)
  }

  /** Starts an upgrade of a limited connection to WebRTC when both sides can; the promise says whether it worked. */
  private maybeUpgrade (conn: Connection): Promise<boolean> | undefined {
    if (this.init.webrtc === false || !this.started || conn.limits == null || conn.direction !== 'outbound') return undefined
    const id = conn.remotePeer.toString()
    const running = this.upgrades.get(id)
    if (running != null) return running
    if ((this.attempts.get(id) ?? 0) >= L.UPGRADE_MAX_ATTEMPTS) return undefined
    const p = this.upgrade(conn)
      .then(ok => { if (ok) this.counts.succeeded++; else this.counts.failed++; return ok })
      .finally(() => { this.upgrades.delete(id) })
    this.upgrades.set(id, p)
    return p
  }

  private async upgrade (conn: Connection): Promise<boolean> {
    const id = conn.remotePeer.toString()
    const peer = await this.node.peerStore.get(conn.remotePeer).catch(() => undefined)
    if (peer == null || !peer.protocols.includes(WEBRTC_SIGNALING_PROTOCOL)) return false
    await this.slot()
    try {
      while ((this.attempts.get(id) ?? 0) < L.UPGRADE_MAX_ATTEMPTS && this.started) {
        this.attempts.set(id, (this.attempts.get(id) ?? 0) + 1)
        this.counts.attempts++
        for (const c of this.node.getConnections(conn.remotePeer)) {
          if (c.limits == null && c.status === 'open' && (connectionTransport(c) !== 'webrtc' || await this.verify(c))) return true
        }
        const relayed = this.node.getConnections(conn.remotePeer).find(c => c.limits != null && c.status === 'open')
        if (relayed == null) return false
        const target = multiaddr(relayed.remoteAddr.decapsulateCode(421).toString() + `/webrtc/p2p/${id}`)
        try {
          const signal = AbortSignal.any([AbortSignal.timeout(L.UPGRADE_TIMEOUT_MS), this.controller.signal])
          const direct = await this.node.dial(target, { signal })
          // onConnection closes the relayed connection once the direct one is verified.
          if (direct.limits == null && await this.verify(direct)) return true
        } catch {}
      }
      if ((this.attempts.get(id) ?? 0) >= L.UPGRADE_MAX_ATTEMPTS) this.failedPaths.add(id)
      return false
    } finally {
      this.release()
    }
  }

  private async slot (): Promise<void> {
    if (this.active < L.UPGRADE_MAX_CONCURRENT) { this.active++; return }
    await new Promise<void>(resolve => { this.queue.push(resolve) })
  }

  private release (): void {
    const next = this.queue.shift()
    if (next != null) next()
    else this.active--
  }

  private closeRelayed (peer: PeerId): void {
    for (const c of this.node.getConnections(peer)) {
      if (c.limits != null) void c.close().catch(() => {})
    }
  }
}

/** The ICE state of a WebRTC connection's peer connection (libp2p keeps it on the connection's transport side); undefined when not WebRTC or not found. */
function iceState (conn: Connection): string | undefined {
  return (conn as unknown as { maConn?: { peerConnection?: { connectionState?: string } } }).maConn?.peerConnection?.connectionState
}

/** The ping protocol (@libp2p/ping with its default prefix). */
export const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PING_BYTES = 32

/** One ping over this very connection (not whichever one libp2p would pick for the peer); rejects if no echo comes before `signal` aborts. */
export async function pingOver (conn: Connection, signal: AbortSignal): Promise<void> {
  const stream = await conn.newStream(PING_PROTOCOL, { signal, runOnLimitedConnection: true })
  try {
    const data = crypto.getRandomValues(new Uint8Array(PING_BYTES))
    const got: number[] = []
    const echoed = new Promise<void>((resolve, reject) => {
      const onMessage = (evt: { data: { subarray: () => Uint8Array } | Uint8Array }): void => {
        const bytes = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray()
        got.push(...bytes)
        if (got.length < PING_BYTES) return
        stream.removeEventListener('message', onMessage as never)
        if (got.slice(0, PING_BYTES).every((b, i) => b === data[i])) resolve()
        else reject(new Error('wrong ping echo'))
      }
      stream.addEventListener('message', onMessage as never)
      stream.addEventListener('close', () => { reject(new Error('stream closed before the echo')) }, { once: true })
      signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true })
    })
    // Settled by the stream's close or the signal even when send throws first: never left unhandled.
    echoed.catch(() => {})
    stream.send(data)
    await echoed
    await stream.close({ signal }).catch(() => {})
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}

function abortPromise (signal?: AbortSignal): Promise<boolean> {
  return new Promise(resolve => {
    if (signal == null) return
    if (signal.aborted) { resolve(false); return }
    signal.addEventListener('abort', () => { resolve(false) }, { once: true })
  })
}
