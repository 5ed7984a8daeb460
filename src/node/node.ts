/**
 * PeerverseNode: loads the identity, opens the store, assembles the network and the services,
 * and starts and stops them in order. A library first: the CLI and the tests start it the same way.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { TypedEventEmitter } from 'main-event'
import { createPeerBinding } from '../identity/binding.ts'
import { initIdentity, type Identity } from '../identity/keystore.ts'
import { Discovery } from '../net/discovery.ts'
import { dhtStatus, findPeerOnDhts, type DhtStatus } from '../net/dhts.ts'
import { GossipRepair } from '../net/gossip-repair.ts'
import { checkTopic, InvalidPeerIdError, InvalidTopicError, libp2pGossip, libp2pProtocols, libp2pRouting, MessageTooLargeError, parsePeerId, type Libp2pGossip } from '../net/libp2p-ports.ts'
import type { ProtocolPort, RoutingPort } from '../net/ports.ts'
import { createNetwork, reachOf, type Network } from '../net/network.ts'
import { connectionTransport, type ConnectionCounts, type ConnectionTransport, type ReachStatus } from '../net/reach.ts'
import { PeerIdentityService } from '../net/peer-identity.ts'
import { LevelDatastore } from '../store/datastore.ts'
import { Store, type DiskStatus, type StoreStatus } from '../store/store.ts'
import { validateConfig, type NodeConfig } from './config.ts'
import { Blockstore } from '../content/blockstore.ts'
import { content, CONTENT_EVENTS, type ContentEvents, type ContentService, type ContentStatus } from '../content/index.ts'
import { FeedStore, social, SOCIAL_EVENTS, type FeedEntryEvent, type SocialEvents, type SocialService } from '../social/index.ts'
import { LEDGER_EVENTS, type LedgerEvents, type LedgerService } from '../ledger/index.ts'
import { NetworkIdService, type MismatchDetail, type NetworkName, type NetworkStatus } from './network-id.ts'
import { parseJoinCode, readNetworkFile, type RememberedNetwork } from './join.ts'
import { NodeChain } from './chain.ts'
import type { Link } from '../net/links.ts'
import { space, SPACE_EVENTS, type SpaceEvents, type SpaceService } from '../space/index.ts'
import { directory, DIRECTORY_EVENTS, type DirectoryEvents, type DirectoryService } from '../directory/index.ts'
import { voice, VOICE_EVENTS, type VoiceEvents, type VoiceService } from '../voice/index.ts'

/** What the node is told of its network beside the config: every peer to start from, a join code, the remembered network. */
export interface NodeNetworkInit {
  bootstrap: string[]
  join?: Link
  remembered?: RememberedNetwork
  /** How long joining a network may take (default JOIN_TIMEOUT_MS). */
  joinTimeoutMs?: number
}

/** Settings of createNode beside the config. */
export interface CreateNodeOptions {
  /** How long joining a network may take (default: the config's ledger.joinTimeoutMs). */
  joinTimeoutMs?: number
}

export class PortInUseError extends Error {
  name = 'PortInUseError'
}

export { InvalidTopicError, MessageTooLargeError, InvalidPeerIdError }

export interface PeerInfoView {
  peerId: string
  did?: string
  addresses: string[]
  /** Each open connection to the peer: its remote address, whether it is direct (not relayed) and its transport. */
  connections: Array<{ address: string, direct: boolean, transport: ConnectionTransport }>
}

export interface NodeStatus {
  peerId: string
  did: string
  addresses: string[]
  peers: string[]
  /** Open connections: all, direct ones (TCP, WebSocket, WebRTC), WebRTC ones (hole-punched) and relayed ones. */
  connections: ConnectionCounts
  /** Reachability (public, behind NAT, unknown), the relays we hold slots on and our relayed and public addresses. */
  reach: ReachStatus
  rejected: number
  memory: { rss: number, heapUsed: number }
  content: ContentStatus
  /** Whether the store accepts writes, its last write failure, free space on its disk and the warning line. */
  store: StoreStatus
  /** The network: its genesis CID, chain, whether it is our own devnet, and connected peers on it and on others. */
  network: NetworkStatus
  /** Each DHT's mode and routing table size (the WAN DHT and the LAN DHT). */
  dht: DhtStatus
  /** Whether the peer looks for peers on the LAN by mDNS. */
  mdns: boolean
}

export type { ContentStatus }

export interface GossipMessageEvent {
  topic: string
  from: string
  data: Uint8Array
}

export interface RejectedEvent {
  peerId: string
  protocol: string
  error: string
}

/** The node's own events (its network); each capability's are added from its exported list. */
export interface NodeOwnEvents {
  'peer:connect': CustomEvent<{ peerId: string }>
  'peer:disconnect': CustomEvent<{ peerId: string }>
  'peer:identified': CustomEvent<{ peerId: string, did: string }>
  'gossip:message': CustomEvent<GossipMessageEvent>
  'peer:rejected': CustomEvent<RejectedEvent>
  'bootstrap:error': CustomEvent<{ address: string, error: string }>
  /** The store stopped accepting writes (a write failed) or accepts them again. */
  'store:writable': CustomEvent<{ writable: boolean, code?: string, error?: string }>
  /** Free space on the data dir's disk fell below the warning line, or is back above it. */
  'disk:low': CustomEvent<DiskStatus>
  'disk:ok': CustomEvent<DiskStatus>
  /** Every bootstrap (or remembered) peer that told its chain is on another chain than ours. */
  'network:mismatch': CustomEvent<MismatchDetail>
  /** The peer follows a network (on start, and after a join switched it). */
  'network:joined': CustomEvent<NetworkName & { devnet: boolean }>
}

/** The names of the node's own events. */
export const NODE_EVENTS = ['peer:connect', 'peer:disconnect', 'peer:identified', 'gossip:message', 'peer:rejected', 'bootstrap:error', 'store:writable', 'disk:low', 'disk:ok', 'network:mismatch', 'network:joined'] as const satisfies ReadonlyArray<keyof NodeOwnEvents>

/** Every event the node emits: its own and each capability's, forwarded under the same names. */
export type NodeEvents = NodeOwnEvents & ContentEvents & SocialEvents & LedgerEvents & SpaceEvents & DirectoryEvents & VoiceEvents

/** Voice events on the JSON event stream: all but `voice:frame` (high rate; only the voice WebSocket carries it, from node.voice). */
export const VOICE_STREAM_EVENTS = VOICE_EVENTS.filter(n => n !== 'voice:frame') as Array<Exclude<typeof VOICE_EVENTS[number], 'voice:frame'>>

/** Every event name the node emits, built from each capability's exported list (the API's event stream sends these). */
export const EVENT_NAMES = [...NODE_EVENTS, ...CONTENT_EVENTS, ...SOCIAL_EVENTS, ...LEDGER_EVENTS, ...SPACE_EVENTS, ...DIRECTORY_EVENTS, ...VOICE_STREAM_EVENTS] as const

export type { FeedEntryEvent }

export interface FindPeerResult {
  peerId: string
  addresses: string[]
  /** The peer whose answer named it. */
  from: string
  /** DHT peers that answered during the lookup. */
  queried: number
}

function isPortInUse (err: unknown): boolean {
  for (let e = err as { code?: string, message?: string, cause?: unknown, errors?: unknown[] } | undefined; e != null; e = e.cause as typeof e) {
    if (e.code === 'EADDRINUSE' || /EADDRINUSE/.test(e.message ?? '')) return true
    if (Array.isArray(e.errors) && e.errors.some(isPortInUse)) return true
  }
  return false
}

/** Errors of a stream opened on a connection that closed meanwhile (ping tries once more). */
const CONNECTION_REPLACED_ERRORS = new Set(['ConnectionClosedError', 'ConnectionClosingError', 'StreamResetError'])

/**
 * Topics whose messages do not go out as `gossip:message` events: space traffic (up to 20 Hz per
 * member) and ledger traffic (proposals of hundreds of KiB) have decoded events of their own.
 */
export const QUIET_TOPIC_PREFIXES = ['peerverse/space/', 'peerverse/ledger/', 'peerverse/directory/']

export class PeerverseNode extends TypedEventEmitter<NodeEvents> {
  readonly config: NodeConfig
  readonly identity: Identity
  readonly store: Store
  readonly net: Network
  /** The ports the capabilities reach the network through. */
  readonly gossip: Libp2pGossip
  readonly protocols: ProtocolPort
  readonly routing: RoutingPort
  /** Topics subscribed to through subscribe() (the API), each with its unsubscribe. */
  private readonly apiTopics = new Map<string, () => void>()
  readonly content: ContentService
  readonly social: SocialService
  /** The chain this peer follows: resolved, and its ledger built, during start(). */
  readonly chain: NodeChain
  readonly space: SpaceService
  readonly directory: DirectoryService
  readonly voice: VoiceService
  private readonly peerIdentity: PeerIdentityService
  private readonly discovery: Discovery
  private readonly gossipRepair: GossipRepair
  private rejectedCount = 0
  /** Peers refused at the connection gate on request (POST /api/v0/net/deny). */
  private readonly denied = new Set<string>()
  private state: 'stopped' | 'starting' | 'started' | 'stopping' = 'stopped'

  constructor (config: NodeConfig, identity: Identity, store: Store, net: Network, binding: Uint8Array, blockstore: Blockstore, network: NodeNetworkInit) {
    super()
    this.config = config
    this.identity = identity
    this.store = store
    this.net = net
    this.gossip = libp2pGossip(net)
    this.protocols = libp2pProtocols(net)
    this.routing = libp2pRouting(net)
    // Every gossip message on a topic we hold goes out as a `gossip:message` event, unless its
    // capability has decoded events of its own.
    this.gossip.tap(m => {
      if (!QUIET_TOPIC_PREFIXES.some(p => m.topic.startsWith(p))) this.safeDispatch('gossip:message', { topic: m.topic, from: m.from, data: m.data })
    })
    const onRejected = (peerId: string, protocol: string, error: Error): void => {
      this.rejectedCount++
      this.safeDispatch('peer:rejected', { peerId, protocol, error: `${error.name}: ${error.message}` })
    }
    this.peerIdentity = new PeerIdentityService(net, binding, {
      onIdentified: (peerId, did) => { this.safeDispatch('peer:identified', { peerId, did }) },
      onRejected
    })
    this.content = content({ noHoldersTimeoutMs: config.content.noHoldersTimeoutMs })({
      protocols: this.protocols,
      routing: this.routing,
      onRejected,
      blockstore,
      store,
      // A fetch whose holders are reachable only through relays asks hole punching for a direct path.
      directPath: config.nat.webrtc ? { waitForDirect: async (peer, signal) => await reachOf(net).waitForDirect(peer, signal) } : undefined
    })
    this.social = social()({
      gossip: this.gossip,
      protocols: this.protocols,
      onRejected,
      identity: { did: identity.did, key: identity.userKey },
      store: new FeedStore(store.sublevel('social')),
      // Replies and likes reach an author's inbox: a connected peer bound to them, else the DHT.
      routing: this.routing,
      peersOf: did => [...this.peerIdentity.dids].flatMap(([peer, d]) => d === did ? [peer] : [])
    })
    for (const name of SOCIAL_EVENTS) this.social.addEventListener(name, evt => { this.safeDispatch(name, evt.detail) })
    this.discovery = new Discovery(net, network.bootstrap, {
      onBootstrapError: (address, error) => { this.safeDispatch('bootstrap:error', { address, error: error.message }) }
    })
    this.gossipRepair = new GossipRepair(net)
    const networkId = new NetworkIdService({
      protocols: this.protocols,
      onRejected,
      startPeers: network.bootstrap.map(a => multiaddr(a).getComponents().findLast(c => c.name === 'p2p')?.value ?? ''),
      onMismatch: detail => { this.safeDispatch('network:mismatch', detail) }
    })
    this.chain = new NodeChain({
      config,
      store,
      networkId,
      join: network.join,
      remembered: network.remembered,
      timeoutMs: network.joinTimeoutMs,
      dial: async (addr, options) => this.net.dial(multiaddr(addr), options),
      cat: (cid, options) => this.content.cat(cid, options),
      content: this.content,
      ledgerComponents: {
        gossip: this.gossip,
        protocols: this.protocols,
        onRejected,
        didOf: peerId => this.peerIdentity.dids.get(peerId),
        identity: { did: identity.did, key: identity.userKey }
      },
      onLedger: l => { for (const name of LEDGER_EVENTS) l.addEventListener(name, evt => { this.safeDispatch(name, evt.detail) }) },
      onJoined: detail => { this.safeDispatch('network:joined', detail) }
    })
    this.space = space({ interest: config.space.interest, joinTimeoutMs: config.space.joinTimeoutMs })({
      gossip: this.gossip,
      protocols: this.protocols,
      routing: this.routing,
      onRejected,
      identity: { did: identity.did, key: identity.userKey, binding },
      store: store.sublevel('space'),
      parcels: id => this.ledger.parcelsIn(id),
      social: { isBlocked: did => this.social.isBlocked(did) }
    })
    for (const name of SPACE_EVENTS) this.space.addEventListener(name, evt => { this.safeDispatch(name, evt.detail) })
    this.directory = this.makeDirectory(onRejected)
    this.voice = this.makeVoice(onRejected, binding)
    store.onChange(change => {
      if (change.type === 'disk') this.safeDispatch(change.disk.low ? 'disk:low' : 'disk:ok', change.disk)
      else this.safeDispatch('store:writable', { writable: change.writable, code: change.error?.code, error: change.error?.message })
    })
    net.addEventListener('peer:connect', evt => { this.safeDispatch('peer:connect', { peerId: evt.detail.toString() }) })
    net.addEventListener('peer:disconnect', evt => { this.safeDispatch('peer:disconnect', { peerId: evt.detail.toString() }) })
  }

  /** The directory of live spaces: it reads spaces through a narrow view, and social's blocks. */
  private makeDirectory (onRejected: (peerId: string, protocol: string, error: Error) => void): DirectoryService {
    const d = directory()({
      gossip: this.gossip,
      protocols: this.protocols,
      routing: this.routing,
      onRejected,
      identity: { did: this.identity.did, key: this.identity.userKey },
      store: this.store.sublevel('directory'),
      spaces: {
        descriptor: id => this.space.isJoined(id) ? this.space.descriptorBytes(id) : undefined,
        present: id => this.space.isJoined(id) ? this.space.headcount(id) : undefined
      },
      social: { isBlocked: did => this.social.isBlocked(did) }
    })
    for (const name of DIRECTORY_EVENTS) d.addEventListener(name, evt => { this.safeDispatch(name, evt.detail) })
    return d
  }

  /** Voice: it reads spaces through a narrow view (members, policy, the group key) and social's blocks and mutes. */
  private makeVoice (onRejected: (peerId: string, protocol: string, error: Error) => void, binding: Uint8Array): VoiceService {
    const v = voice({ maxHeard: this.config.voice.maxHeard, rangeM: this.config.voice.rangeM })({
      protocols: this.protocols,
      onRejected,
      identity: { did: this.identity.did, key: this.identity.userKey, binding },
      spaces: {
        isJoined: id => this.space.isJoined(id),
        who: id => this.space.who(id),
        me: id => this.space.me(id),
        isExcluded: (id, did) => this.space.isExcluded(id, did),
        isOwnerMuted: (id, did) => this.space.isOwnerMuted(id, did),
        cipher: id => this.space.cipher(id)
      },
      social: { isBlocked: did => this.social.isBlocked(did), isMuted: did => this.social.isMuted(did) },
      store: this.store.sublevel('voice')
    })
    for (const name of VOICE_STREAM_EVENTS) v.addEventListener(name, evt => { this.safeDispatch(name, evt.detail) })
    return v
  }

  private safeDispatch<K extends keyof NodeEvents> (type: K, detail: NodeEvents[K]['detail']): void {
    this.safeDispatchEvent(type, { detail } as any)
  }

  get peerId (): string { return this.net.peerId.toString() }
  get did (): string { return this.identity.did }

  async start (): Promise<void> {
    if (this.state === 'started' || this.state === 'starting') return
    this.state = 'starting'
    try {
      await this.net.start()
    } catch (err) {
      this.state = 'stopped'
      try { await this.net.stop() } catch {}
      await this.store.close()
      if (isPortInUse(err)) throw new PortInUseError(`a listen port is in use (${this.config.listen.join(', ')})`)
      throw err
    }
    await this.peerIdentity.start()
    await this.content.start()
    await this.social.start()
    this.discovery.start()
    try {
      await this.chain.start()
    } catch (err) {
      // No chain (a join that could not finish): nothing else starts, and the peer stops cleanly.
      this.state = 'started'
      await this.stop().catch(() => {})
      throw err
    }
    await this.space.start()
    await this.directory.start()
    await this.voice.start()
    this.gossipRepair.start()
    this.store.startMonitor()
    this.state = 'started'
  }

  async stop (): Promise<void> {
    if (this.state === 'stopped') {
      // Never started (or already stopped): the store may still be open.
      await this.store.close()
      return
    }
    if (this.state === 'stopping') return
    this.state = 'stopping'
    // Every step runs whatever the one before it did (a service that cannot save its last state on
    // a full disk must not keep the store open); the first failure is thrown once all have run.
    const failures: unknown[] = []
    const steps: Array<() => unknown> = [
      () => { this.discovery.stop() }, () => { this.gossipRepair.stop() },
      async () => this.voice.stop(), async () => this.directory.stop(), async () => this.space.stop(), async () => this.chain.stop(), async () => this.social.stop(),
      async () => this.content.stop(), async () => this.peerIdentity.stop(), () => { this.gossip.close() },
      async () => this.net.stop(), async () => this.store.close()
    ]
    for (const step of steps) {
      try { await step() } catch (err) { failures.push(err) }
    }
    this.state = 'stopped'
    if (failures.length > 0) throw failures[0]
  }

  get started (): boolean { return this.state === 'started' }

  /** The ledger of the chain this peer follows (there once start() resolved). */
  get ledger (): LedgerService { return this.chain.ledger }

  addresses (): string[] {
    return this.net.getMultiaddrs().map(a => a.toString())
  }

  peers (): PeerInfoView[] {
    return this.net.getPeers().map(id => ({
      peerId: id.toString(),
      did: this.peerIdentity.dids.get(id.toString()),
      addresses: this.net.getConnections(id).map(c => c.remoteAddr.toString()),
      connections: this.net.getConnections(id).map(c => {
        const transport = connectionTransport(c)
        return { address: c.remoteAddr.toString(), direct: transport !== 'relay', transport }
      })
    }))
  }

  status (): NodeStatus {
    const mem = process.memoryUsage()
    return {
      peerId: this.peerId,
      did: this.did,
      addresses: this.addresses(),
      peers: this.net.getPeers().map(p => p.toString()),
      connections: reachOf(this.net).connections(),
      reach: reachOf(this.net).status(),
      rejected: this.rejectedCount,
      memory: { rss: mem.rss, heapUsed: mem.heapUsed },
      content: this.content.status(),
      store: this.store.status(),
      network: this.chain.networkStatus(),
      dht: dhtStatus(this.net),
      mdns: this.config.discovery.mdns
    }
  }

  /** Looks a peer up through the DHT network (never the local cache) and returns its addresses. */
  async findPeer (peerId: string, options: { signal?: AbortSignal } = {}): Promise<FindPeerResult> {
    const id = parsePeerId(peerId)
    // Both DHTs at once (the WAN one and the LAN one); the first answer wins.
    const { addresses, from, queried } = await findPeerOnDhts(this.net, id, options)
    return { peerId, addresses, from, queried }
  }

  /** Dials a multiaddr or a peer id; returns the remote peer id. */
  async connect (target: string, options: { signal?: AbortSignal } = {}): Promise<string> {
    const conn = await this.net.dial(target.startsWith('/') ? multiaddr(target) : parsePeerId(target), options)
    return conn.remotePeer.toString()
  }

  /** Whether `peerId` is on the deny list. */
  isDenied (peerId: string): boolean { return this.denied.has(peerId) }

  /** Replaces the deny list: those peers are refused either way and hung up on now. Returns the list. */
  async denyPeers (ids: string[]): Promise<string[]> {
    const peers = ids.map(parsePeerId)
    this.denied.clear()
    for (const p of peers) this.denied.add(p.toString())
    await Promise.all(peers.map(async p => this.net.hangUp(p).catch(() => {})))
    return [...this.denied]
  }

  /** Round-trip time to a peer (id or multiaddr) in milliseconds. */
  async ping (target: string, options: { signal?: AbortSignal } = {}): Promise<number> {
    const to = target.startsWith('/') ? multiaddr(target) : parsePeerId(target)
    try {
      return await this.net.services.ping.ping(to, options)
    } catch (err) {
      // The connection closed under the ping: a relayed one replaced by a direct one after hole
      // punching does that. Once more, on the connection there is now.
      if (!CONNECTION_REPLACED_ERRORS.has((err as Error).name) || options.signal?.aborted === true) throw err
      return await this.net.services.ping.ping(to, options)
    }
  }

  /** Subscribes the API to a topic: its messages go out as `gossip:message` events. */
  subscribe (topic: string): void {
    if (this.apiTopics.has(topic)) return
    // Its messages reach the event stream through the node's tap.
    this.apiTopics.set(topic, this.gossip.subscribe(topic, () => {}))
  }

  unsubscribe (topic: string): void {
    checkTopic(topic)
    this.apiTopics.get(topic)?.()
    this.apiTopics.delete(topic)
  }

  /** Peers known to subscribe to a topic. */
  topicPeers (topic: string): string[] {
    return this.gossip.subscribers(topic)
  }

  topics (): string[] {
    return this.gossip.topics()
  }

  /** Publishes on a topic; returns the number of peers it was sent to. */
  async publish (topic: string, data: Uint8Array): Promise<number> {
    return await this.gossip.publish(topic, data)
  }
}

/** Builds a node from a config (identity created on first run); call start() to go online. */
export async function createNode (config: NodeConfig, options: CreateNodeOptions = {}): Promise<PeerverseNode> {
  validateConfig(config)
  // A malformed join code is refused before anything is written.
  const join = config.ledger.join == null ? undefined : parseJoinCode(config.ledger.join)
  const remembered = await readNetworkFile(config.dataDir)
  const bootstrap = [...new Set([...config.bootstrap, ...(join?.peers ?? []), ...(remembered?.peers ?? [])])]
  const identity = await initIdentity(config.dataDir)
  const store = await Store.open(config.dataDir, { lowDiskBytes: config.store.lowDiskBytes, ballastBytes: config.store.ballastBytes })
  try {
    // Banned peers (a holder that sent bad blocks) and denied ones are refused at the connection gate.
    const deny = { peer: (_peerId: string): boolean => false }
    const net = await createNetwork({
      deny,
      privateKey: identity.peerKey,
      listen: config.listen,
      announce: config.announce,
      datastore: new LevelDatastore(store.sublevel('net')),
      dhtMode: config.dht.mode,
      mdns: config.discovery.mdns,
      relayServer: config.relay.server,
      webrtc: config.nat.webrtc,
      stun: config.nat.stun,
      reachability: config.nat.reachability === 'auto' ? undefined : config.nat.reachability
    })
    const binding = await createPeerBinding(identity.userKey, net.peerId.toString())
    const blockstore = await Blockstore.open(store.sublevel('content'), config.dataDir, config.content.maxStoreBytes)
    const node = new PeerverseNode(config, identity, store, net, binding.bytes, blockstore, { bootstrap, join, remembered, joinTimeoutMs: options.joinTimeoutMs ?? config.ledger.joinTimeoutMs })
    deny.peer = peerId => node.content.isBanned(peerId) || node.isDenied(peerId)
    return node
  } catch (err) {
    await store.close()
    throw err
  }
}
