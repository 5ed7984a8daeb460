/**
 * Ports for ledger tests without a network: gossip that records what is published and hands the
 * subscribed handlers whatever a test delivers, and a protocol port with no peers whose dials fail.
 */
import type { GossipHandler, GossipPort, ProtocolPort } from '../../src/net/ports.ts'

export interface RecordingGossip extends GossipPort {
  /** Everything published, in order. */
  published: Array<{ topic: string, data: Uint8Array }>
  /** Hands a message to the handlers subscribed to `topic`, at once (as if a peer had gossiped it). */
  deliver: (topic: string, data: Uint8Array, from?: string) => void
}

export function recordingGossip (): RecordingGossip {
  const handlers = new Map<string, Set<GossipHandler>>()
  const published: RecordingGossip['published'] = []
  return {
    published,
    async publish (topic, data) {
      published.push({ topic, data })
      return 0
    },
    subscribe (topic, handler) {
      const set = handlers.get(topic) ?? new Set()
      handlers.set(topic, set)
      const entry: GossipHandler = m => handler(m)
      set.add(entry)
      return () => { set.delete(entry) }
    },
    subscribers: () => [],
    onSubscriptionChange: () => () => {},
    deliver (topic, data, from = '12D3KooWTestPeer') {
      for (const h of handlers.get(topic) ?? []) {
        const r = h({ topic, from, data })
        if (r instanceof Promise) r.catch(() => {})
      }
    }
  }
}

/** A protocol port on no network: handling is a no-op, there are no peers, every dial fails. */
export function noNetwork (): ProtocolPort {
  return {
    peerId: '12D3KooWNoNetwork',
    addresses: () => [],
    handle: async () => {},
    unhandle: async () => {},
    dial: async () => { throw new Error('no network') },
    peers: () => [],
    connections: () => [],
    hangUp: async () => {},
    onPeer: () => () => {}
  }
}
