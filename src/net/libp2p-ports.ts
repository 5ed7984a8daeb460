/**
 * The ports (ports.ts) implemented once over our libp2p node. Gossip goes through one table from
 * topic to handlers: a message is handed to the handlers subscribed to its topic, and the topic is
 * left on GossipSub once its last handler unsubscribes.
 */
import type { Connection, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { GOSSIP_MAX_MESSAGE_BYTES, GOSSIP_MAX_TOPIC_LENGTH } from './limits.ts'
import type { Network } from './network.ts'
import type { GossipHandler, GossipPort, PeerEvent, ProtocolPort, RemotePeer, RoutingPort } from './ports.ts'

export class InvalidTopicError extends Error {
  name = 'InvalidTopicError'
}

export class MessageTooLargeError extends Error {
  name = 'MessageTooLargeError'
}

export class InvalidPeerIdError extends Error {
  name = 'InvalidPeerIdError'
}

export function checkTopic (topic: unknown): asserts topic is string {
  if (typeof topic !== 'string' || topic.length === 0 || topic.length > GOSSIP_MAX_TOPIC_LENGTH) {
    throw new InvalidTopicError(`a topic is a string of 1..${GOSSIP_MAX_TOPIC_LENGTH} characters`)
  }
}

export function parsePeerId (value: string): PeerId {
  try {
    return peerIdFromString(value)
  } catch {
    throw new InvalidPeerIdError(`not a peer id: ${value}`)
  }
}

function remoteOf (conn: Connection): RemotePeer {
  return { peer: conn.remotePeer.toString(), address: conn.remoteAddr.toString(), limited: conn.limits != null }
}

export interface Libp2pGossip extends GossipPort {
  /** Topics with at least one handler. */
  topics: () => string[]
  /** Calls `handler` with every message on a subscribed topic, whoever subscribed (the node's raw event stream). */
  tap: (handler: GossipHandler) => () => void
  /** Stops listening to GossipSub (the node's stop). */
  close: () => void
}

/** Gossip over the node's GossipSub: one handler table, reference-counted subscriptions. */
export function libp2pGossip (net: Network): Libp2pGossip {
  const pubsub = net.services.pubsub
  const table = new Map<string, Set<GossipHandler>>()
  const changes = new Set<(peer: string, topic: string, subscribed: boolean) => void>()
  const taps = new Set<GossipHandler>()
  // GossipSub announces each message's propagation source just before the message itself.
  const sources = new WeakMap<object, string>()
  const onSource = (evt: CustomEvent): void => {
    const d = evt.detail as { propagationSource: PeerId, msg: object }
    sources.set(d.msg, d.propagationSource.toString())
  }
  const onMessage = (evt: CustomEvent): void => {
    const msg = evt.detail as { type: string, topic: string, from: PeerId, data: Uint8Array }
    if (msg.type !== 'signed') return
    const handlers = table.get(msg.topic)
    if (handlers == null) return
    const message = { topic: msg.topic, from: msg.from.toString(), via: sources.get(msg), data: msg.data }
    for (const h of [...taps, ...handlers]) {
      try {
        const r = h(message)
        if (r instanceof Promise) r.catch(() => {})
      } catch {}
    }
  }
  const onChange = (evt: CustomEvent): void => {
    const { peerId, subscriptions } = evt.detail as { peerId: PeerId, subscriptions: Array<{ topic: string, subscribe: boolean }> }
    for (const s of subscriptions) for (const h of changes) h(peerId.toString(), s.topic, s.subscribe)
  }
  pubsub.addEventListener('gossipsub:message' as 'message', onSource as EventListener)
  pubsub.addEventListener('message', onMessage as EventListener)
  pubsub.addEventListener('subscription-change', onChange as EventListener)
  return {
    async publish (topic, data) {
      checkTopic(topic)
      if (data.length > GOSSIP_MAX_MESSAGE_BYTES) throw new MessageTooLargeError(`gossip message is ${data.length} bytes, over ${GOSSIP_MAX_MESSAGE_BYTES}`)
      const result = await pubsub.publish(topic, data)
      return result.recipients.length
    },
    subscribe (topic, handler) {
      checkTopic(topic)
      let set = table.get(topic)
      if (set == null) {
        set = new Set()
        table.set(topic, set)
        pubsub.subscribe(topic)
      }
      // Each subscription is its own entry, so the same function subscribed twice needs two unsubscribes.
      const entry: GossipHandler = m => handler(m)
      set.add(entry)
      let done = false
      return () => {
        if (done) return
        done = true
        const s = table.get(topic)
        if (s == null) return
        s.delete(entry)
        if (s.size === 0) {
          table.delete(topic)
          pubsub.unsubscribe(topic)
        }
      }
    },
    subscribers (topic) {
      checkTopic(topic)
      return pubsub.getSubscribers(topic).map(p => p.toString())
    },
    onSubscriptionChange (handler) {
      const h = (peer: string, topic: string, subscribed: boolean): void => { handler(peer, topic, subscribed) }
      changes.add(h)
      return () => { changes.delete(h) }
    },
    validate (topic, check) {
      checkTopic(topic)
      const fn = (_peer: PeerId, msg: { type: string, topic: string, from?: PeerId, data: Uint8Array }): TopicValidatorResult => {
        if (msg.type !== 'signed' || msg.from == null) return TopicValidatorResult.Reject
        try {
          return check({ topic: msg.topic, from: msg.from.toString(), via: _peer.toString(), data: msg.data }) as TopicValidatorResult
        } catch {
          return TopicValidatorResult.Reject
        }
      }
      pubsub.topicValidators.set(topic, fn as never)
      return () => {
        if (pubsub.topicValidators.get(topic) === (fn as never)) pubsub.topicValidators.delete(topic)
      }
    },
    topics: () => [...table.keys()],
    tap (handler) {
      const h: GossipHandler = m => handler(m)
      taps.add(h)
      return () => { taps.delete(h) }
    },
    close () {
      taps.clear()
      pubsub.removeEventListener('gossipsub:message' as 'message', onSource as EventListener)
      pubsub.removeEventListener('message', onMessage as EventListener)
      pubsub.removeEventListener('subscription-change', onChange as EventListener)
      changes.clear()
    }
  }
}

/** Our stream protocols and connections over libp2p. */
export function libp2pProtocols (net: Network): ProtocolPort {
  const libp2pEvent: Record<PeerEvent, 'peer:connect' | 'peer:disconnect' | 'peer:identify'> = {
    connect: 'peer:connect',
    disconnect: 'peer:disconnect',
    identify: 'peer:identify'
  }
  return {
    peerId: net.peerId.toString(),
    addresses: () => net.getMultiaddrs().map(a => a.toString()),
    async handle (protocol, handler, options) {
      await net.handle(protocol, (stream, connection) => { handler(stream, remoteOf(connection)) }, options)
    },
    async unhandle (protocol) {
      await net.unhandle(protocol)
    },
    async dial (peer, protocol, options = {}) {
      const id = parsePeerId(peer)
      const addrs = options.addresses ?? []
      const target = addrs.length > 0 && net.getConnections(id).length === 0 ? addrs.map(a => multiaddr(a)) : id
      return await net.dialProtocol(target, protocol, { signal: options.signal, runOnLimitedConnection: options.runOnLimitedConnection })
    },
    peers: () => net.getPeers().map(p => p.toString()),
    connections: peer => (peer == null ? net.getConnections() : net.getConnections(parsePeerId(peer))).filter(c => c.status === 'open').map(remoteOf),
    async hangUp (peer) {
      await net.hangUp(parsePeerId(peer))
    },
    onPeer (event, handler) {
      const listener = (evt: CustomEvent): void => {
        const d = evt.detail as PeerId | { peerId: PeerId, protocols: string[] }
        if ('peerId' in d) handler(d.peerId.toString(), d.protocols)
        else handler(d.toString())
      }
      net.addEventListener(libp2pEvent[event], listener as EventListener)
      return () => { net.removeEventListener(libp2pEvent[event], listener as EventListener) }
    }
  }
}

/** Content routing over the DHT; providers' addresses go to the peer store for dialling. */
export function libp2pRouting (net: Network): RoutingPort {
  return {
    async provide (cid, options = {}) {
      await net.contentRouting.provide(cid, options)
    },
    async cancelProvide (cid) {
      await net.services.dht.cancelReprovide(cid)
    },
    async * findProviders (cid, options = {}) {
      for await (const p of net.contentRouting.findProviders(cid, options)) {
        if (p.multiaddrs.length > 0) await net.peerStore.merge(p.id, { multiaddrs: p.multiaddrs }).catch(() => {})
        yield { peer: p.id.toString(), addresses: p.multiaddrs.map(a => a.toString()) }
      }
    }
  }
}
