/**
 * Ports over a real libp2p node that also keep count of what a capability holds open through
 * them: protocol handlers, gossip subscriptions and event listeners. The compliance suite checks
 * that a capability's stop() gives every one of them back.
 */
import { libp2pGossip, libp2pProtocols, libp2pRouting } from '../../src/net/libp2p-ports.ts'
import type { Network } from '../../src/net/network.ts'
import type { GossipPort, ProtocolPort, RoutingPort } from '../../src/net/ports.ts'

export interface Held {
  handlers: Set<string>
  subscriptions: Map<string, number>
  listeners: number
}

export interface RecordingPorts {
  gossip: GossipPort
  protocols: ProtocolPort
  routing: RoutingPort
  held: Held
  /** A summary of what is still held, for assertion messages. */
  describe: () => string
  /** Whether nothing is held. */
  empty: () => boolean
  close: () => void
}

/** Ports over `net` that record what is handled, subscribed and listened to. */
export function recordingPorts (net: Network): RecordingPorts {
  const gossip = libp2pGossip(net)
  const protocols = libp2pProtocols(net)
  const held: Held = { handlers: new Set(), subscriptions: new Map(), listeners: 0 }
  const counted = (off: () => void): () => void => {
    held.listeners++
    let done = false
    return () => {
      if (done) return
      done = true
      held.listeners--
      off()
    }
  }
  return {
    held,
    gossip: {
      ...gossip,
      subscribe (topic, handler) {
        const off = gossip.subscribe(topic, handler)
        held.subscriptions.set(topic, (held.subscriptions.get(topic) ?? 0) + 1)
        let done = false
        return () => {
          if (done) return
          done = true
          const n = (held.subscriptions.get(topic) ?? 1) - 1
          if (n === 0) held.subscriptions.delete(topic)
          else held.subscriptions.set(topic, n)
          off()
        }
      },
      onSubscriptionChange: handler => counted(gossip.onSubscriptionChange(handler))
    },
    protocols: {
      ...protocols,
      async handle (protocol, handler, options) {
        await protocols.handle(protocol, handler, options)
        held.handlers.add(protocol)
      },
      async unhandle (protocol) {
        await protocols.unhandle(protocol)
        held.handlers.delete(protocol)
      },
      onPeer: (event, handler) => counted(protocols.onPeer(event, handler))
    },
    routing: libp2pRouting(net),
    describe: () => `handlers [${[...held.handlers].join(', ')}], subscriptions [${[...held.subscriptions.keys()].join(', ')}], listeners ${held.listeners}`,
    empty: () => held.handlers.size === 0 && held.subscriptions.size === 0 && held.listeners === 0,
    close: () => { gossip.close() }
  }
}
