/**
 * Dials and streams to a peer held only over a relay (src/net/limited.ts): which known addresses
 * are worth a direct dial, the dial plan read after the peer store answers, and on loopback a
 * direct dial by id, its fallback to the relayed connection, and a stream whose protocol does not
 * run on a relay (DirectPathRequiredError, or the WebRTC connection once the hole punch is made).
 */
import { describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Connection } from '@libp2p/interface'
import { createNetwork, reachOf, type Network, type NetworkInit } from '../../src/net/network.ts'
import { DirectPathRequiredError, limitedToReuse, planDial, sameLan, worthDirectDial, type DialNode } from '../../src/net/limited.ts'
import { connectionTransport } from '../../src/net/reach.ts'
import { LAN_PREFIX_BITS_IPV4 } from '../../src/net/limits.ts'
import { cleanups } from '../helpers/cleanup.ts'
import { waiter } from '../helpers/local-peers.ts'
import { releaseWebRTCAfterAll } from '../helpers/webrtc.ts'

releaseWebRTCAfterAll()

const eventually = waiter({ timeoutMs: 60_000, intervalMs: 50 })
const relayId = '12D3KooWKMETbnj1U47ZVBgGutpWD45bwAXVXAV1cL57CmNq3dtP'
const target = '12D3KooWJtKJVhwyiQZRPLTpwWqBywJSZKRxWjfowkUfmFVXEHrG'
const relayedAddr = multiaddr(`/ip4/11.0.0.1/tcp/4001/p2p/${relayId}/p2p-circuit/p2p/${target}`)
const conn = (limited: boolean, status = 'open'): Connection => ({
  status, limits: limited ? { bytes: 1n } : undefined, remoteAddr: limited ? relayedAddr : multiaddr('/ip4/11.0.0.9/tcp/4001'), remotePeer: peerIdFromString(target)
}) as unknown as Connection

describe('addresses worth a direct dial', () => {
  const home = { ips: ['10.1.0.10'] }
  it('DNS, public, our own LAN and (on loopback) loopback are; relayed, another LAN and another host\'s loopback are not', () => {
    const worth = (a: string, here: { ips: string[], dialable?: (ma: Multiaddr) => boolean } = home): boolean => worthDirectDial(multiaddr(a), here)
    assert.equal(worth('/dns4/peer.example.org/tcp/4001'), true, 'a DNS name')
    assert.equal(worth('/dnsaddr/example.org'), true)
    assert.equal(worth('/ip4/11.0.0.7/tcp/4001'), true, 'a public address')
    assert.equal(worth('/ip4/10.1.0.11/tcp/4001'), true, 'a private address on our LAN')
    assert.equal(worth('/ip4/10.2.0.10/tcp/4001'), false, 'the private address of another home')
    assert.equal(worth('/ip4/127.0.0.1/tcp/4001'), false, 'another host\'s loopback')
    assert.equal(worth('/ip4/127.0.0.1/tcp/4001', { ips: ['127.0.0.1'] }), true, 'loopback, when we are on it')
    assert.equal(worth('/ip4/10.1.0.11/tcp/4001', { ips: ['127.0.0.1'] }), false, 'a private address, when we are on loopback alone')
    assert.equal(worth(relayedAddr.toString()), false, 'through a relay')
    assert.equal(worth('/ip4/11.0.0.7/tcp/4001', { ips: [], dialable: () => false }), false, 'no transport of ours dials it')
    assert.equal(worth('/ip6/fd00:1::5/tcp/4001', { ips: ['fd00:1::9'] }), true, 'an IPv6 ULA on our /64')
    assert.equal(worth('/ip6/fd00:2::5/tcp/4001', { ips: ['fd00:1::9'] }), false)
  })

  it('counts private addresses as one LAN up to LAN_PREFIX_BITS_IPV4 bits and no further', () => {
    assert.equal(LAN_PREFIX_BITS_IPV4, 16)
    assert.equal(sameLan('192.168.1.4', '192.168.200.9'), true)
    assert.equal(sameLan('192.168.1.4', '192.169.1.4'), false, 'past the prefix')
    assert.equal(sameLan('10.1.0.1', 'fd00::1'), false, 'another family')
    assert.equal(sameLan('10.1.0.1', 'not an ip'), false)
  })

  it('a dial by id keeps the relayed connection only while every known address is relayed or unreachable from here', () => {
    const limited = conn(true)
    assert.equal(limitedToReuse([limited], [], [relayedAddr, multiaddr('/ip4/10.2.0.10/tcp/4001')], home), limited)
    assert.equal(limitedToReuse([limited], [], [relayedAddr, multiaddr('/ip4/10.1.0.20/tcp/4001')], home), undefined, 'a LAN address')
    assert.equal(limitedToReuse([limited], [], [relayedAddr, multiaddr('/dns4/peer.example.org/tcp/4001')], home), undefined, 'a DNS address')
  })
})

describe('the dial plan', () => {
  /** A node whose peer store answers only when `answer` is called, so the test can change the connections meanwhile. */
  function slowNode (connections: Connection[], known: Multiaddr[]): { node: DialNode, answer: () => void } {
    let answer = (): void => {}
    const node: DialNode = {
      getConnections: () => connections,
      getMultiaddrs: () => [],
      peerStore: { get: async () => { await new Promise<void>(resolve => { answer = resolve }); return { addresses: known.map(m => ({ multiaddr: m })) } } }
    }
    return { node, answer: () => { answer() } }
  }
  const here = { ips: ['10.1.0.10'] }

  it('sees a direct connection that opened while the peer store answered, and does not hand back a relayed one that closed', async () => {
    const limited = conn(true)
    const connections = [limited]
    const a = slowNode(connections, [relayedAddr])
    const plan = planDial(a.node, peerIdFromString(target), here)
    await new Promise(resolve => setImmediate(resolve))
    connections.push(conn(false))
    a.answer()
    assert.equal((await plan).kind, 'libp2p', 'libp2p hands back the direct connection')

    const closing = conn(true)
    const b = slowNode([closing], [relayedAddr])
    const plan2 = planDial(b.node, peerIdFromString(target), here)
    await new Promise(resolve => setImmediate(resolve));
    (closing as { status: string }).status = 'closed'
    b.answer()
    assert.equal((await plan2).kind, 'libp2p', 'the closed relayed connection is not reused')

    const c = slowNode([conn(true)], [relayedAddr, multiaddr('/ip4/10.1.0.20/tcp/4001')])
    const plan3 = planDial(c.node, peerIdFromString(target), here)
    await new Promise(resolve => setImmediate(resolve))
    c.answer()
    const p3 = await plan3
    assert.equal(p3.kind, 'direct')
    assert.deepEqual(p3.kind === 'direct' && p3.addrs.map(String), [`/ip4/10.1.0.20/tcp/4001/p2p/${target}`], 'only the address worth a direct dial')
    const d = slowNode([conn(true)], [relayedAddr, multiaddr('/ip4/10.1.0.20/tcp/4001')])
    const plan4 = planDial(d.node, peerIdFromString(target), here, { has: () => true })
    await new Promise(resolve => setImmediate(resolve))
    d.answer()
    assert.equal((await plan4).kind, 'reuse', 'a peer whose direct dial just failed keeps the relayed connection')
  })
})

async function peer (t: TestContext, defer: ReturnType<typeof cleanups>, init: Partial<NetworkInit>): Promise<Network> {
  const node = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], lanDht: false, ...init })
  await node.start()
  defer(async () => node.stop())
  return node
}

/** A relay, a peer listening on `hiddenListen` besides its relay slot, and a dialer on loopback holding a relayed connection to it. */
async function heldOverRelay (t: TestContext, hiddenListen: string[], webrtc = false, dialerListen = ['/ip4/127.0.0.1/tcp/0']): Promise<{ dialer: Network, hidden: Network, first: Connection }> {
  const defer = cleanups(t)
  const relay = await peer(t, defer, { reachability: 'public' })
  const hidden = await peer(t, defer, { listen: [...hiddenListen, '/p2p-circuit', ...(webrtc ? ['/webrtc'] : [])], webrtc })
  const dialer = await peer(t, defer, { webrtc, listen: dialerListen })
  await hidden.dial(relay.getMultiaddrs()[0])
  await eventually('the hidden peer\'s relayed address', () => hidden.getMultiaddrs().some(a => a.toString().includes('p2p-circuit') && !a.toString().includes('webrtc')))
  const relayed = hidden.getMultiaddrs().find(a => a.toString().includes('p2p-circuit') && !a.toString().includes('webrtc')) as Multiaddr
  const first = await dialer.dial(relayed)
  assert.notEqual(first.limits, undefined, 'the first connection is relayed')
  await eventually('the dialer identified the hidden peer', async () => (await dialer.peerStore.get(hidden.peerId)).protocols.length > 0)
  return { dialer, hidden, first }
}

describe('dials and streams of a peer held over a relay, on loopback', { timeout: 180_000 }, () => {
  it('a dial by id of a peer known at a loopback address (we are on loopback) opens a direct connection', async t => {
    const { dialer, hidden } = await heldOverRelay(t, ['/ip4/127.0.0.1/tcp/0'])
    await eventually('the dialer knows a direct address of the hidden peer', async () => (await dialer.peerStore.get(hidden.peerId)).addresses.some(a => a.multiaddr.toString().startsWith('/ip4/127.0.0.1/tcp/')))
    const conn = await dialer.dial(hidden.peerId)
    assert.equal(conn.limits, undefined, 'a direct connection')
    assert.equal(connectionTransport(conn), 'tcp')
  })

  it('a failed direct dial falls back to the relayed connection, and the next dial takes it at once', async t => {
    const { dialer, hidden, first } = await heldOverRelay(t, [])
    // An address worth a direct dial where nothing listens.
    const server = createServer()
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as { port: number }).port
    await new Promise<void>(resolve => server.close(() => { resolve() }))
    await dialer.peerStore.merge(hidden.peerId, { multiaddrs: [multiaddr(`/ip4/127.0.0.1/tcp/${port}`)] })
    let opened = 0
    dialer.addEventListener('connection:open', () => { opened++ })
    assert.equal((await dialer.dial(hidden.peerId)).id, first.id, 'the relayed connection after the failed dial')
    assert.equal((await dialer.dial(hidden.peerId)).id, first.id)
    assert.equal(opened, 0, 'no connection was opened')
  })

  it('a stream whose protocol does not run over a relay fails with DirectPathRequiredError where no direct path can open', async t => {
    // The dialer listens on nothing either: no connection can open between the two but through the relay.
    const { dialer, hidden } = await heldOverRelay(t, [], false, [])
    const protocol = '/peerverse/test/direct-only/1.0.0'
    await hidden.handle(protocol, async stream => { await stream.close() }, { runOnLimitedConnection: false })
    await assert.rejects(dialer.dialProtocol(hidden.peerId, protocol), (err: Error) => err instanceof DirectPathRequiredError && err.name === 'DirectPathRequiredError' && err.message.includes(protocol))
    // A protocol that runs over relays still does.
    const relayedOk = '/peerverse/test/relayed-ok/1.0.0'
    await hidden.handle(relayedOk, async stream => { await stream.close() }, { runOnLimitedConnection: true })
    const s = await dialer.dialProtocol(hidden.peerId, relayedOk, { runOnLimitedConnection: true })
    await s.close()
  })

  it('a stream whose protocol does not run over a relay waits for the hole punch and runs on the WebRTC connection', async t => {
    const { dialer, hidden } = await heldOverRelay(t, [], true)
    const protocol = '/peerverse/test/direct-only/1.0.0'
    await hidden.handle(protocol, async stream => { await stream.close() }, { runOnLimitedConnection: false })
    const stream = await dialer.dialProtocol(hidden.peerId, protocol)
    const conn = dialer.getConnections(hidden.peerId).find(c => c.streams.includes(stream))
    assert.equal(conn != null && connectionTransport(conn), 'webrtc')
    await stream.close()
    assert.ok(reachOf(dialer).connections().webrtc >= 1)
  })
})
