/**
 * The libp2p assembly: TCP and WebSocket transports (and circuit relay for peers behind NAT),
 * Noise, Yamux, identify, ping, two Kademlia DHTs on our own protocol ids, GossipSub with strict
 * signing and peer scoring, a circuit relay server, AutoNAT and hole punching (DCUtR), and mDNS.
 * Every limit comes from limits.ts.
 *
 * Two DHTs, as IPFS keeps them (Helia's defaults: a LAN DHT and the Amino DHT). The WAN DHT
 * (`/peerverse/kad/1.0.0`) follows the mode setting: in `auto` a peer answers queries only once
 * AutoNAT finds it publicly reachable, so on a LAN, at home or on one machine every default peer
 * would stay a client and nobody would answer anyone. The LAN DHT (`/peerverse/lan/kad/1.0.0`) is
 * always a server and carries only private and loopback addresses, so peers that reach each other
 * only there still form one DHT; public addresses stay on the WAN DHT.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { autoNAT } from '@libp2p/autonat'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify, identifyPush } from '@libp2p/identify'
import type { Identify } from '@libp2p/identify'
import type { Libp2p, PrivateKey, StreamMiddleware } from '@libp2p/interface'
import { kadDHT, passthroughMapper, removePrivateAddressesMapper, removePublicAddressesMapper, type KadDHT } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { memory } from '@libp2p/memory'
import { ping, type Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { webRTC } from '@libp2p/webrtc'
import { webSockets } from '@libp2p/websockets'
import type { Datastore } from 'interface-datastore'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2pOptions } from 'libp2p'
import * as L from './limits.ts'
import { prefixGuard } from './prefix-guard.ts'
import { limitedDials } from './limited.ts'
import { connectionTransport, Reach, WEBRTC_SIGNALING_PROTOCOL, type Reachability } from './reach.ts'
import { signalingLimit } from './webrtc-limits.ts'
import { peerIdFromString } from '@libp2p/peer-id'
import { StunServer } from './stun.ts'

export const DHT_PROTOCOL = '/peerverse/kad/1.0.0'
/** The LAN DHT: always a server, private and loopback addresses only. */
export const LAN_DHT_PROTOCOL = '/peerverse/lan/kad/1.0.0'
/** The LAN DHT's records live under their own datastore prefix, apart from the WAN DHT's (`/dht`). */
export const LAN_DHT_DATASTORE_PREFIX = '/dht-lan'
/** Our mDNS service name, so we find our own peers on the LAN and not every libp2p node there. */
export const MDNS_SERVICE_TAG = '_peerverse._udp.local'
/** Time between mDNS queries on the LAN (the library's default). */
export const MDNS_INTERVAL_MS = 10_000
export const PROTOCOL_PREFIX = 'peerverse'
/** The prefix of libp2p's standard identify ids, which other libp2p programs speak. */
export const STANDARD_PROTOCOL_PREFIX = 'ipfs'
export const AGENT_VERSION = 'peerverse/0.1.0'

export type DhtMode = 'server' | 'client' | 'auto'

export interface NetworkInit {
  privateKey: PrivateKey
  /** Multiaddrs to listen on: /tcp, /ws, /p2p-circuit (reserve a relay slot), /memory (tests, benchmarks). */
  listen: string[]
  /** Addresses to announce instead of the listen addresses (a public address behind a port mapping). */
  announce?: string[]
  datastore?: Datastore
  /** 'server' answers DHT queries; 'auto' does so once AutoNAT finds the peer publicly reachable. */
  dhtMode?: DhtMode
  /** Relay connections for peers that are not directly reachable (default true). */
  relayServer?: boolean
  /** Peers refused on every connection, either way (set later by the services that ban). */
  deny?: { peer: (peerId: string) => boolean }
  /** Run the LAN DHT (default true; false only for a benchmark's anchor, the single DHT peers ran before). */
  lanDht?: boolean
  /** Find peers on the LAN by multicast DNS (default false here; the node's config turns it on by default). */
  mdns?: boolean
  /** Overrides of the connection manager's limits (tests and benchmarks only). */
  connectionManager?: Libp2pOptions['connectionManager']
  /** The WebRTC transport: relayed connections upgrade to direct ones through NATs (default true). */
  webrtc?: boolean
  /** Answer STUN on UDP at our first TCP port, when we run the relay server (default true). */
  stun?: boolean
  /** Take this reachability as given instead of finding it out (a public relay or bootstrap is told `public`). */
  reachability?: Reachability
}

export interface NetworkServices {
  identify: Identify
  identifyPush: unknown
  /** Identify on the standard id, for peers that do not speak ours. */
  ipfsIdentify: Identify
  ipfsIdentifyPush: unknown
  ping: Ping
  dht: KadDHT
  /** Absent only where the network was built without it (a benchmark's anchor). */
  lanDht: KadDHT
  pubsub: GossipSub
  [key: string]: unknown
}

export type Network = Libp2p<NetworkServices>

const LOOPBACK = ['127.0.0.1', '::1']

/**
 * GossipSub's fast message id: the message's signature. Under StrictSign a signature covers the
 * sender, sequence number, topic and data, and only messages that passed validation enter the
 * fast-id cache, so a later message with the same signature is byte-for-byte a copy of one already
 * taken and can skip the signature check (each copy from another mesh peer used to cost one
 * Ed25519 verification). An unsigned message gets no fast id and fails validation as before.
 */
export function gossipFastMsgId (msg: { signature?: Uint8Array }): string {
  // The library skips its fast-id cache for an undefined id (its type says string).
  return (msg.signature != null && msg.signature.length > 0 ? Buffer.from(msg.signature.buffer, msg.signature.byteOffset, msg.signature.byteLength).toString('base64') : undefined) as string
}

/** What both DHTs share: our limits on streams, lookup width and paths. */
const DHT_SHARED_OPTIONS = {
  maxInboundStreams: L.DHT_MAX_INBOUND_STREAMS,
  maxOutboundStreams: L.DHT_MAX_OUTBOUND_STREAMS,
  alpha: L.DHT_ALPHA,
  disjointPaths: L.DHT_DISJOINT_PATHS,
  initialQuerySelfInterval: 500,
  allowQueryWithZeroPeers: false
} as const

/**
 * The WAN DHT's address filter. In `auto` mode (the default) a peer serves the WAN DHT only once
 * it is publicly reachable, and then strangers on the internet ask it for peers: it hands out
 * public addresses only (as the IPFS Amino DHT does), since a private address names another host
 * on every LAN it reaches and leaks this one's layout; the LAN DHT carries private addresses. A
 * peer told `server` or `client` keeps every address, so a network run by hand on one machine or
 * one LAN (`--dht-mode server` on loopback) works on the WAN DHT as it always has. (kad-dht's
 * own default mapper is the same private-address filter, for the same reason.)
 */
export function wanPeerInfoMapper (mode: DhtMode | undefined): typeof passthroughMapper {
  return mode === 'auto' ? removePrivateAddressesMapper : passthroughMapper
}

/** Builds (but does not start) the libp2p node. */
export async function createNetwork (init: NetworkInit): Promise<Network> {
  const usesMemory = init.listen.some(a => a.startsWith('/memory'))
  const services: Record<string, unknown> = {
    // Identify runs on each new connection in identifyConnections (ours first, the standard one if the peer lacks ours).
    identify: identify({ protocolPrefix: PROTOCOL_PREFIX, maxMessageSize: L.IDENTIFY_MAX_MESSAGE_BYTES, runOnConnectionOpen: false }),
    identifyPush: identifyPush({ protocolPrefix: PROTOCOL_PREFIX, maxMessageSize: L.IDENTIFY_MAX_MESSAGE_BYTES }),
    // The standard ids (`/ipfs/id/1.0.0`, `/ipfs/id/push/1.0.0`), so stock libp2p programs (Helia, Kubo) identify us
    // and learn that we speak Bitswap. Its push is sent only while such a peer is connected (identifyConnections).
    ipfsIdentify: identify({ protocolPrefix: STANDARD_PROTOCOL_PREFIX, maxMessageSize: L.IDENTIFY_MAX_MESSAGE_BYTES, runOnConnectionOpen: false }),
    ipfsIdentifyPush: identifyPush({ protocolPrefix: STANDARD_PROTOCOL_PREFIX, maxMessageSize: L.IDENTIFY_MAX_MESSAGE_BYTES, runOnSelfUpdate: false }),
    ping: ping({ runOnLimitedConnection: true, maxInboundStreams: L.PING_MAX_STREAMS, maxOutboundStreams: L.PING_MAX_STREAMS }),
    dht: kadDHT({
      protocol: DHT_PROTOCOL,
      clientMode: init.dhtMode === 'auto' ? undefined : init.dhtMode === 'client',
      peerInfoMapper: wanPeerInfoMapper(init.dhtMode),
      ...DHT_SHARED_OPTIONS
    }),
    lanDht: init.lanDht === false ? undefined : kadDHT({
      protocol: LAN_DHT_PROTOCOL,
      clientMode: false,
      peerInfoMapper: removePublicAddressesMapper,
      logPrefix: 'libp2p:peerverse:dht-lan',
      datastorePrefix: LAN_DHT_DATASTORE_PREFIX,
      metricsPrefix: 'libp2p_dht_lan',
      ...DHT_SHARED_OPTIONS
    }),
    pubsub: gossipsub({
      globalSignaturePolicy: 'StrictSign',
      allowPublishToZeroTopicPeers: true,
      emitSelf: false,
      runOnLimitedConnection: true,
      // A copy of a message we already took is dropped before its signature is checked again.
      fastMsgIdFn: gossipFastMsgId,
      maxInboundDataLength: L.GOSSIP_MAX_RPC_BYTES,
      maxOutboundBufferSize: L.GOSSIP_MAX_OUTBOUND_BUFFER_BYTES,
      idontwantMinDataSize: L.GOSSIP_IDONTWANT_MIN_BYTES,
      decodeRpcLimits: {
        maxSubscriptions: L.GOSSIP_MAX_SUBSCRIPTIONS_PER_RPC,
        maxMessages: 256,
        maxIhaveMessageIDs: 5000,
        maxIwantMessageIDs: 5000,
        maxIdontwantMessageIDs: 5000,
        maxControlMessages: 256,
        maxPeerInfos: 16
      },
      scoreParams: {
        // Peers on one machine share an address; colocation only means something between hosts.
        IPColocationFactorWhitelist: new Set(LOOPBACK)
      },
      scoreThresholds: {
        gossipThreshold: -10,
        publishThreshold: -50,
        graylistThreshold: -80
      }
    }),
    autoNAT: freshDialBack(autoNAT()),
    dcutr: directOnlyUnilateral(dcutr())
  }
  if (services.lanDht == null) delete services.lanDht
  if (init.mdns === true) services.mdns = mdns({ serviceTag: MDNS_SERVICE_TAG, interval: MDNS_INTERVAL_MS })
  if (init.relayServer !== false) {
    services.relay = circuitRelayServer({
      maxInboundHopStreams: L.RELAY_MAX_INBOUND_HOP_STREAMS,
      reservations: {
        maxReservations: L.RELAY_MAX_RESERVATIONS,
        defaultDataLimit: L.RELAY_MAX_BYTES_PER_CIRCUIT,
        defaultDurationLimit: L.RELAY_MAX_CIRCUIT_DURATION_MS
      }
    })
  }

  const options: Libp2pOptions<NetworkServices> = {
    start: false,
    privateKey: init.privateKey,
    nodeInfo: { userAgent: AGENT_VERSION },
    addresses: { listen: init.webrtc === false ? init.listen.filter(a => a !== '/webrtc') : init.listen, announce: init.announce ?? [] },
    datastore: init.datastore,
    transports: [
      tcp(),
      webSockets(),
      circuitRelayTransport({ reservationCompletionTimeout: L.PROTOCOL_TIMEOUT_MS * 2 }),
      ...(init.webrtc !== false ? [reportingFailures(webRTC({ rtcConfiguration: async () => ({ iceServers: reachOf(node).iceServers() }) }), ma => { reaches.get(node)?.webrtcDialFailed(ma) })] : []),
      ...(usesMemory ? [memory()] : [])
    ],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({
      maxInboundStreams: L.MAX_INBOUND_STREAMS_PER_CONNECTION,
      maxMessageSize: L.MAX_YAMUX_MESSAGE_BYTES
    })],
    connectionManager: {
      maxConnections: L.MAX_CONNECTIONS,
      maxIncomingPendingConnections: L.MAX_INCOMING_PENDING_CONNECTIONS,
      inboundConnectionThreshold: L.INBOUND_CONNECTIONS_PER_SECOND_PER_HOST,
      inboundUpgradeTimeout: L.INBOUND_UPGRADE_TIMEOUT_MS,
      dialTimeout: L.DIAL_TIMEOUT_MS,
      maxParallelDials: L.MAX_PARALLEL_DIALS,
      ...init.connectionManager
    },
    connectionGater: {
      denyDialPeer: async peer => init.deny?.peer(peer.toString()) === true,
      // A peer whose direct path failed is dialled through the relay at once.
      denyDialMultiaddr: async ma => reaches.get(node)?.skipsDial(ma) === true,
      denyInboundEncryptedConnection: async peer => init.deny?.peer(peer.toString()) === true,
      denyOutboundEncryptedConnection: async peer => init.deny?.peer(peer.toString()) === true
    },
    services: services as Libp2pOptions<NetworkServices>['services']
  }
  // eslint-disable-next-line prefer-const
  let node: Network
  node = await createLibp2p(options)
  attachReach(node, init)
  identifyConnections(node)
  fixMiddlewareSharing(node)
  reuseLimitedConnections(node)
  // Length-prefixed protocols read by libraries, not by framed.ts: their prefixes are bounded here.
  for (const [protocol, maxFrameBytes, maxFrames] of GUARDED_PROTOCOLS) node.use(protocol, prefixGuard(maxFrameBytes, maxFrames))
  if (init.webrtc !== false) {
    const webrtcOpen = (peer: string): number => node.getConnections(peerIdFromString(peer)).filter(c => c.status === 'open' && connectionTransport(c) === 'webrtc').length
    node.use(WEBRTC_SIGNALING_PROTOCOL, signalingLimit(webrtcOpen, undefined, () => { reachOf(node).signalingRefused++ }))
  }
  return node
}

/**
 * AutoNAT's server dials the asking peer back at the address it asks about, checks that the
 * connection it got is at that address, and closes it. Its `openConnection` would hand back the
 * connection the asking peer came in on when one is open (its remote port is the peer's ephemeral
 * one, not the address asked about): the check fails, and closing that connection dropped the
 * asking peer about once a second (a relay's reservation with it). The service is given a
 * connection manager whose dial-back to one address is always a fresh connection (`force`); its
 * random walk (a list of addresses) is left as it was.
 */
export function freshDialBack<C extends { connectionManager: object }, S> (factory: (components: C) => S): (components: C) => S {
  return components => {
    const cm = components.connectionManager as { openConnection: (peer: unknown, options?: Record<string, unknown>) => Promise<unknown> }
    const connectionManager = new Proxy(cm, {
      get (target, prop) {
        if (prop === 'openConnection') {
          return async (peer: unknown, options: Record<string, unknown> = {}) => await target.openConnection(peer, Array.isArray(peer) ? options : { ...options, force: true })
        }
        const v: unknown = Reflect.get(target, prop)
        return typeof v === 'function' ? v.bind(target) : v
      }
    })
    return factory(new Proxy(components, {
      get (target, prop) { return prop === 'connectionManager' ? connectionManager : Reflect.get(target, prop) }
    }))
  }
}

/**
 * DCUtR's inbound side first tries a "unilateral upgrade": it force-dials every address of the
 * peer that looks public and that some transport can dial, and on any connection it gets it
 * closes the relayed one. Its test for "public" skips `/p2p-circuit` only when the address ends
 * there, so a relayed WebRTC address (`/ip4/<relay's public IP>/…/p2p/R/p2p-circuit/webrtc`)
 * passes; that address names no peer at its end, so the dial reaches the relay R itself, succeeds,
 * and the relayed connection to the peer was closed on every new one (between two symmetric NATs,
 * within seconds, for good). The service is given a transport manager that dials nothing through
 * a relay: DCUtR's own purpose is a direct connection, and reach upgrades relayed connections to
 * WebRTC itself, verifying them before it closes anything.
 */
export function directOnlyUnilateral<C extends { transportManager: object }, S> (factory: (components: C) => S): (components: C) => S {
  return components => {
    const tm = components.transportManager as { dialTransportForMultiaddr: (ma: Multiaddr) => unknown }
    const transportManager = new Proxy(tm, {
      get (target, prop) {
        if (prop === 'dialTransportForMultiaddr') {
          return (ma: Multiaddr) => ma.getComponents().some(c => c.name === 'p2p-circuit') ? undefined : target.dialTransportForMultiaddr(ma)
        }
        const v: unknown = Reflect.get(target, prop)
        return typeof v === 'function' ? v.bind(target) : v
      }
    })
    return factory(new Proxy(components, {
      get (target, prop) { return prop === 'transportManager' ? transportManager : Reflect.get(target, prop) }
    }))
  }
}

/** A transport whose failed dials are reported to `onFailure` (reach counts failed WebRTC paths by peer). */
export function reportingFailures<C, T extends { dial: (ma: Multiaddr, options: never) => Promise<unknown> }> (factory: (components: C) => T, onFailure: (ma: Multiaddr) => void): (components: C) => T {
  return components => {
    const transport = factory(components)
    const dial = transport.dial.bind(transport)
    transport.dial = (async (ma: Multiaddr, options: never) => {
      try {
        return await dial(ma, options)
      } catch (err) {
        onFailure(ma)
        throw err
      }
    }) as T['dial']
    return transport
  }
}

const reaches = new WeakMap<Network, Reach>()

/** The reachability manager of a network built by createNetwork. */
export function reachOf (node: Network): Reach {
  const r = reaches.get(node)
  if (r == null) throw new Error('network was not built by createNetwork')
  return r
}

/**
 * Starts reachability (and the STUN responder of a relaying peer) with the node and stops them
 * before it. A `/p2p-circuit` in the listen addresses keeps a relay listener always (tests, a
 * peer that knows it needs one); otherwise reach opens and closes it by reachability.
 */
function attachReach (node: Network, init: NetworkInit): void {
  const reach = new Reach(node, {
    assume: init.reachability,
    autoRelay: !init.listen.some(a => a.startsWith('/p2p-circuit')),
    webrtc: init.webrtc
  })
  reaches.set(node, reach)
  let stun: StunServer | undefined
  const start = node.start.bind(node)
  const stop = node.stop.bind(node)
  node.start = async () => {
    await start()
    await reach.start()
    if (init.relayServer !== false && init.stun !== false && stun == null) {
      const first = init.listen.map(a => /^\/ip[46]\/([^/]+)\/tcp\/(\d+)$/.exec(a)).find(m => m != null)
      const bound = first == null ? undefined : (Number(first[2]) !== 0 ? Number(first[2]) : node.getMultiaddrs().map(a => a.getComponents().find(c => c.name === 'tcp')?.value).find(v => v != null))
      if (first != null && bound != null) stun = await StunServer.start({ host: first[1], port: Number(bound) }).catch(() => undefined)
    }
  }
  node.stop = async () => {
    await reach.stop()
    await stun?.stop()
    stun = undefined
    await stop()
  }
}

/**
 * Identifies the peer of every new connection on our own identify id, and on the standard one
 * when the peer does not speak ours (a stock libp2p program: Helia, Kubo), so its protocols (such
 * as Bitswap) are known either way. Our own peers are identified once, on ours.
 */
function identifyConnections (node: Network): void {
  node.addEventListener('connection:open', evt => {
    const connection = evt.detail
    node.services.identify.identify(connection).catch(err => {
      if ((err as Error)?.name !== 'UnsupportedProtocolError' || connection.status !== 'open') return
      node.services.ipfsIdentify.identify(connection).catch(() => {})
    })
  })
  // Our protocols changed: peers that speak only the standard push are told on it (ours on our own id).
  const ours = `/${PROTOCOL_PREFIX}/id/push/1.0.0`
  const standard = `/${STANDARD_PROTOCOL_PREFIX}/id/push/1.0.0`
  node.addEventListener('self:peer:update', () => {
    void (async () => {
      for (const peer of node.getPeers()) {
        const protocols = (await node.peerStore.get(peer).catch(() => undefined))?.protocols ?? []
        if (protocols.includes(standard) && !protocols.includes(ours)) {
          await (node.services.ipfsIdentifyPush as { push: () => Promise<void> }).push()
          return
        }
      }
    })().catch(() => {})
  })
}

/**
 * libp2p's registrar hands out the very array of middleware registered for a protocol, and its
 * inbound path pushes the protocol's handler onto that array, so with any middleware registered
 * every inbound stream would add the handler once more (the Nth stream would run it N times). The
 * registrar is given a getMiddleware that hands out a copy.
 */
function fixMiddlewareSharing (node: Libp2p): void {
  const registrar = (node as unknown as { components: { registrar: { getMiddleware: (protocol: string) => StreamMiddleware[] } } }).components.registrar
  const get = registrar.getMiddleware.bind(registrar)
  registrar.getMiddleware = protocol => [...get(protocol)]
}

/**
 * Dials of a peer held only over a relay and streams whose protocol does not run on one (limited.ts),
 * with our own addresses and transports as `here`.
 */
function reuseLimitedConnections (node: Network): void {
  const components = (node as unknown as { components: { connectionManager: Parameters<typeof limitedDials>[1], transportManager: { dialTransportForMultiaddr: (ma: Multiaddr) => unknown, getAddrs: () => Multiaddr[] } } }).components
  limitedDials(node, components.connectionManager, {
    waitForDirect: async (peer, signal) => await reachOf(node).waitForDirect(peer, signal),
    here: () => ({
      ips: components.transportManager.getAddrs().filter(a => !a.toString().includes('/p2p-circuit')).map(a => a.getComponents()[0]).filter(c => c.name === 'ip4' || c.name === 'ip6').map(c => c.value ?? ''),
      dialable: ma => components.transportManager.dialTransportForMultiaddr(ma) != null
    })
  })
}

/**
 * Protocols whose length prefixes the prefix guard bounds, with the largest frame each reads and,
 * where only the first frames are framed, how many (a relay's hop and stop streams carry one
 * message each way and then the relayed connection's bytes).
 */
export const GUARDED_PROTOCOLS: ReadonlyArray<readonly [string, number, number?]> = [
  [DHT_PROTOCOL, L.DHT_MAX_MESSAGE_BYTES],
  [LAN_DHT_PROTOCOL, L.DHT_MAX_MESSAGE_BYTES],
  [`/${PROTOCOL_PREFIX}/id/1.0.0`, L.IDENTIFY_MAX_MESSAGE_BYTES],
  [`/${PROTOCOL_PREFIX}/id/push/1.0.0`, L.IDENTIFY_MAX_MESSAGE_BYTES],
  [`/${STANDARD_PROTOCOL_PREFIX}/id/1.0.0`, L.IDENTIFY_MAX_MESSAGE_BYTES],
  [`/${STANDARD_PROTOCOL_PREFIX}/id/push/1.0.0`, L.IDENTIFY_MAX_MESSAGE_BYTES],
  ['/libp2p/circuit/relay/0.2.0/hop', L.LIBP2P_CONTROL_MAX_MESSAGE_BYTES, 1],
  ['/libp2p/circuit/relay/0.2.0/stop', L.LIBP2P_CONTROL_MAX_MESSAGE_BYTES, 1],
  ['/libp2p/autonat/1.0.0', L.LIBP2P_CONTROL_MAX_MESSAGE_BYTES],
  ['/libp2p/dcutr', L.LIBP2P_CONTROL_MAX_MESSAGE_BYTES]
]
