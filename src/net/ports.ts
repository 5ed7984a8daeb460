/**
 * The ports a capability uses to reach the network, as types only. A capability asks for just the
 * ports it needs in its Components (js-libp2p style) and never holds libp2p itself, so the node
 * (or a browser peer, or a test) can supply them however it likes. Peers are named by their
 * string peer id, content by CIDs.
 */
import type { Stream } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

/** A gossip message that passed the transport's signature check. */
export interface GossipMessage {
  topic: string
  /** Peer id of the signer (the origin, with strict signing). */
  from: string
  /** Peer id of the connected peer that passed it to us, where the transport says. */
  via?: string
  data: Uint8Array
}

export type GossipHandler = (message: GossipMessage) => void | Promise<void>

/** Publish/subscribe on topics (GossipSub on the Node peer). */
export interface GossipPort {
  /** Publishes on a topic; returns the number of peers it was sent to. */
  publish: (topic: string, data: Uint8Array) => Promise<number>
  /** Subscribes `handler` to a topic; the returned function unsubscribes it (safe twice). */
  subscribe: (topic: string, handler: GossipHandler) => () => void
  /** Peers known to subscribe to a topic. */
  subscribers: (topic: string) => string[]
  /** Calls `handler` when a peer joins or leaves a topic; returns the function that stops it. */
  onSubscriptionChange: (handler: (peer: string, topic: string, subscribed: boolean) => void) => () => void
  /**
   * Judges every message on `topic` before it is delivered or forwarded: 'accept' passes it on,
   * 'ignore' drops it, 'reject' drops it and counts against the peer that sent it (gossip scoring).
   * One validator a topic; the returned function removes it. Optional: a port may lack it.
   */
  validate?: (topic: string, check: (message: GossipMessage) => GossipVerdict) => () => void
}

export type GossipVerdict = 'accept' | 'ignore' | 'reject'

/** The peer at the other end of a stream or connection. */
export interface RemotePeer {
  peer: string
  /** The connection's remote multiaddr. */
  address: string
  /** A relayed connection with data or time limits. */
  limited: boolean
  /** Bytes the connection may still carry, where it is limited by bytes. */
  limitBytes?: number
}

export interface HandleOptions {
  maxInboundStreams: number
  maxOutboundStreams: number
  /** Accept the protocol over relayed (limited) connections too. */
  runOnLimitedConnection?: boolean
}

export interface DialOptions {
  signal?: AbortSignal
  runOnLimitedConnection?: boolean
  /** Addresses to try when the peer is not connected yet (e.g. from a signed beacon). */
  addresses?: string[]
}

export type ProtocolHandler = (stream: Stream, remote: RemotePeer) => void

export type PeerEvent = 'connect' | 'disconnect' | 'identify'

/** Our own stream protocols, and the peers we are connected to. */
export interface ProtocolPort {
  /** Our own peer id. */
  readonly peerId: string
  /** Our listen (or announced) addresses. */
  addresses: () => string[]
  handle: (protocol: string, handler: ProtocolHandler, options: HandleOptions) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  /** Opens a stream on `protocol` to `peer`, dialling it first if needed. */
  dial: (peer: string, protocol: string, options?: DialOptions) => Promise<Stream>
  /** Peers with at least one open connection. */
  peers: () => string[]
  /** Open connections, all or to one peer. */
  connections: (peer?: string) => RemotePeer[]
  hangUp: (peer: string) => Promise<void>
  /** Calls `handler` on a peer event (after identify, with the protocols the peer speaks); returns the function that stops it. */
  onPeer: (event: PeerEvent, handler: (peer: string, protocols?: string[]) => void) => () => void
}

export interface ProviderRecord {
  peer: string
  addresses: string[]
}

/** Content and peer routing (the Kademlia DHT on the Node peer). */
export interface RoutingPort {
  /** Announces that we hold `cid`. */
  provide: (cid: CID, options?: { signal?: AbortSignal }) => Promise<void>
  /** Stops re-announcing `cid`. */
  cancelProvide: (cid: CID) => Promise<void>
  /** Peers that announced `cid`; their addresses are remembered for dialling. */
  findProviders: (cid: CID, options?: { signal?: AbortSignal }) => AsyncIterable<ProviderRecord>
}

/** Where a capability reports input a peer should not have sent (feeds peer scoring and the API). */
export type RejectSink = (peer: string, protocol: string, error: Error) => void

/** The user did bound to a peer id by the peer's signed binding, if it sent one. */
export type DidOf = (peer: string) => string | undefined
