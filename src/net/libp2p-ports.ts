/**
 * The ports (ports.ts) implemented once over our libp2p node. Gossip goes through one table from
 * topic to handlers: a message is handed to the handlers subscribed to its topic, and the topic is
 * left on GossipSub once its last handler unsubscribes.
 */
import type { Connection, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { GOSSIP_MAX_MESSAGE_BYTES, GOSSIP_MAX_TOPIC_LENGTH } from './limits.ts'
import { activeDhts, dhts } from './dhts.ts'
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
  const bytes = conn.limits?.bytes
  return { peer: conn.remotePeer.toString(), address: conn.remoteAddr.toString(), limited: conn.limits != null, ...(bytes != null ? { limitBytes: Number(bytes) } : {}) }
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

/**
 * Content routing over both DHTs (dhts.ts). libp2p's own `contentRouting` does ask every DHT
 * service (each registers as a content router), but it needs every one to succeed
 * (`Promise.all` for provide) and waits on each: a DHT with an empty routing table (the WAN DHT of
 * a default peer on a LAN) holds its query until the caller's timeout, failing the announcement
 * the other DHT made. Here an announcement succeeds when one DHT took it, and only DHTs with peers
 * are asked. Providers' addresses go to the peer store for dialling.
 */
export function libp2pRouting (net: Network): RoutingPort {
  return {
    async provide (cid, options = {}) {
      const results = await Promise.allSettled(activeDhts(net).map(async dht => { await drain(dht.provide(cid, options)) }))
      const failed = results.filter(r => r.status === 'rejected')
      if (failed.length === results.length && failed.length > 0) throw failed[0].reason
    },
    async cancelProvide (cid) {
      await Promise.allSettled(dhts(net).map(async d => d.dht.cancelReprovide(cid)))
    },
    async * findProviders (cid, options = {}) {
      const seen = new Set<string>()
      // Both queries stop once the caller stops reading.
      const controller = new AbortController()
      const signal = options.signal == null ? controller.signal : AbortSignal.any([controller.signal, options.signal])
      try {
        for await (const p of mergeProviders(activeDhts(net).map(dht => dht.findProviders(cid, { signal })))) {
          const peer = p.id.toString()
          if (seen.has(peer)) continue
          seen.add(peer)
          if (p.multiaddrs.length > 0) await net.peerStore.merge(p.id, { multiaddrs: p.multiaddrs }).catch(() => {})
          yield { peer, addresses: p.multiaddrs.map(a => a.toString()) }
        }
      } finally {
        controller.abort()
      }
    }
  }
}

async function drain (source: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of source) {} // eslint-disable-line no-unused-vars
}

interface FoundProvider { id: PeerId, multiaddrs: Multiaddr[] }

/**
 * The PROVIDER events of several DHT queries as one stream, in arrival order. One query failing
 * ends only its part; the stream fails only when every query failed and none found anyone.
 */
async function * mergeProviders (sources: Array<AsyncIterable<{ name: string, providers?: FoundProvider[] }>>): AsyncGenerator<FoundProvider> {
  const queue: FoundProvider[] = []
  const errors: unknown[] = []
  let running = sources.length
  let found = 0
  let wake: (() => void) | undefined
  const notify = (): void => { const w = wake; wake = undefined; w?.() }
  for (const source of sources) {
    void (async () => {
      try {
        for await (const event of source) {
          if (event.name !== 'PROVIDER' || event.providers == null) continue
          queue.push(...event.providers)
          notify()
        }
      } catch (err) {
        errors.push(err)
      } finally {
        running--
        notify()
      }
    })()
  }
  while (true) {
    const next = queue.shift()
    if (next != null) {
      found++
      yield next
      continue
    }
    if (running === 0) break
    await new Promise<void>(resolve => { wake = resolve })
  }
  if (found === 0 && errors.length === sources.length && errors.length > 0) throw errors[0]
}
