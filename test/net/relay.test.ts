/**
 * A peer that cannot be dialled directly (it listens on nothing but a relay slot) is still
 * reachable: it reserves a slot on a relaying peer, its relayed address is found through the
 * DHT, and another peer pings it and gossips with it through the relay.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { PeerSet, waitFor } from '../helpers/cli-peer.ts'
import { EventLog } from '../helpers/events.ts'

const set = new PeerSet()
const logs: EventLog[] = []
after(async () => {
  for (const l of logs) l.close()
  await set.cleanup()
})

describe('circuit relay', { timeout: 120_000 }, () => {
  it('reaches an undialable peer through a relay peer', async () => {
    const relay = await set.start()
    const hidden = await set.start({ listen: ['/p2p-circuit'], bootstrap: [relay.addr] })
    assert.ok(!hidden.ready.addresses.some(a => a.includes('/tcp/') && !a.includes('p2p-circuit')), 'the hidden peer has no direct address')
    const relayed = await waitFor('a relay reservation', async () => {
      const { addresses } = await hidden.api.request<{ addresses: string[] }>('GET', '/api/v0/status')
      return addresses.find(a => a.includes(`/p2p/${relay.ready.peerId}/p2p-circuit/p2p/${hidden.ready.peerId}`))
    })

    // The relayed address is what the DHT hands out for the hidden peer.
    const finder = await set.start({ bootstrap: [relay.addr] })
    const found = await waitFor('the hidden peer in the DHT', async () => {
      const r = await finder.api.request<{ addresses: string[] }>('GET', `/api/v0/dht/peer/${hidden.ready.peerId}`)
      return r.addresses.some(a => a.includes('p2p-circuit')) ? r : undefined
    })
    assert.ok(found.addresses.every(a => a.includes('p2p-circuit')), 'no direct address is advertised')

    // A fresh peer that knows nothing but the relayed address: the only way in is the relay.
    const dialer = await set.start()
    assert.deepEqual((await dialer.api.request<{ peers: string[] }>('GET', '/api/v0/status')).peers, [])
    const dialerLog = await EventLog.open(dialer)
    logs.push(dialerLog)
    const { peerId } = await dialer.api.request<{ peerId: string }>('POST', '/api/v0/connect', { address: relayed })
    assert.equal(peerId, hidden.ready.peerId)
    // The API's event stream reports the new peer, and then who it is.
    await waitFor('peer:connect event', () => dialerLog.events.some(e => e.type === 'peer:connect' && e.peerId === hidden.ready.peerId))
    await waitFor('peer:identified event', () => dialerLog.events.some(e => e.type === 'peer:identified' && e.peerId === hidden.ready.peerId && e.did === hidden.ready.did))
    // A ping on a relayed connection that hole punching replaces meanwhile can be lost with it: asked again, as a client does.
    const { rttMs } = await waitFor('a ping answered', async () => await dialer.api.request<{ rttMs: number }>('POST', '/api/v0/ping', { target: hidden.ready.peerId }, { signal: AbortSignal.timeout(10_000) }))
    assert.ok(rttMs >= 0)
    // (DCUtR may then upgrade the link to a direct one dialled by the hidden peer: that is its job.)

    // Gossip flows over the relayed connection too.
    const topic = 'peerverse/test/relay'
    const hiddenLog = await EventLog.open(hidden)
    logs.push(hiddenLog)
    await hidden.api.request('POST', '/api/v0/gossip/subscribe', { topic })
    await dialer.api.request('POST', '/api/v0/gossip/subscribe', { topic })
    await waitFor('the dialer sees the hidden peer subscribed', async () => {
      const r = await dialer.api.request<{ peers: string[] }>('GET', `/api/v0/gossip/peers?topic=${encodeURIComponent(topic)}`)
      return r.peers.includes(hidden.ready.peerId)
    })
    // Gossip is best effort: a message written on the relayed connection while hole punching
    // replaces it can be lost, so the dialer publishes again (about once a second) until one arrives.
    let published = 0
    await waitFor('gossip through the relay', async () => {
      if (hiddenLog.gossip(topic).includes('through the relay')) return true
      if (published++ % 10 === 0) await dialer.api.request('POST', '/api/v0/gossip/publish', { topic, data: 'through the relay' })
      return false
    })
  })
})
