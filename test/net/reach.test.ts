/**
 * Reachability on loopback: the STUN responder, the relay listener held only while a peer is not
 * public, and a relayed connection upgraded to a direct WebRTC one that new streams then use.
 */
import { describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createNetwork, directOnlyUnilateral, freshDialBack, reachOf, type Network, type NetworkInit } from '../../src/net/network.ts'
import { connectionTransport, dialTarget, FailedPaths, limitedToReuse, relayedWebrtcTarget } from '../../src/net/reach.ts'
import type { Connection } from '@libp2p/interface'
import { UPGRADE_FAILED_MEMORY_MS, UPGRADE_FAILED_PEERS_MAX, UPGRADE_MAX_ATTEMPTS } from '../../src/net/limits.ts'
import {
  StunServer, StunMessageError, parseStunMessage, readXorMappedAddress, STUN_MAGIC_COOKIE, STUN_MAX_REQUEST_BYTES,
  STUN_RESPONSE_BURST_PER_HOST
} from '../../src/net/stun.ts'
import { cleanups } from '../helpers/cleanup.ts'
import { waiter } from '../helpers/local-peers.ts'
import { releaseWebRTCAfterAll } from '../helpers/webrtc.ts'

releaseWebRTCAfterAll()

const eventually = waiter({ timeoutMs: 60_000, intervalMs: 50 })

function bindingRequest (txByte: number, extra = 0): Buffer {
  const b = Buffer.alloc(20 + extra)
  b.writeUInt16BE(0x0001, 0)
  b.writeUInt16BE(extra, 2)
  b.writeUInt32BE(STUN_MAGIC_COOKIE, 4)
  b.fill(txByte, 8, 20)
  return b
}

async function peer (t: TestContext, defer: ReturnType<typeof cleanups>, init: Partial<NetworkInit>): Promise<Network> {
  const node = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], lanDht: false, ...init })
  await node.start()
  defer(async () => node.stop())
  return node
}

describe('STUN responder', () => {
  it('answers a binding request with the asker\'s address, drops malformed and oversize packets, and rate-limits a host', async t => {
    const defer = cleanups(t)
    const server = await StunServer.start({ host: '127.0.0.1', port: 0 })
    defer(async () => server.stop())
    const client = createSocket('udp4')
    await new Promise<void>(resolve => client.bind(0, '127.0.0.1', resolve))
    defer(async () => { client.close() })
    const replies: Buffer[] = []
    client.on('message', m => replies.push(m))
    const { port } = server.address()

    const req = bindingRequest(7)
    client.send(req, port, '127.0.0.1')
    await eventually('a binding response', () => replies.length === 1)
    assert.deepEqual(readXorMappedAddress(replies[0]), { address: '127.0.0.1', port: client.address().port })
    assert.ok(replies[0].byteLength <= req.byteLength + 12, 'the response is the request plus one attribute at most')
    assert.deepEqual([...parseStunMessage(replies[0]).transactionId], new Array(12).fill(7))

    assert.throws(() => parseStunMessage(Buffer.from('hello, not stun')), StunMessageError)
    assert.throws(() => parseStunMessage(bindingRequest(1, STUN_MAX_REQUEST_BYTES)), (e: Error) => e.name === 'StunMessageError')
    client.send(Buffer.from('GET / HTTP/1.1\r\n\r\n'), port, '127.0.0.1')
    client.send(bindingRequest(2, STUN_MAX_REQUEST_BYTES), port, '127.0.0.1')
    const badLength = bindingRequest(3); badLength.writeUInt16BE(8, 2)
    client.send(badLength, port, '127.0.0.1')
    await eventually('malformed packets counted', () => server.stats.malformed === 3)
    assert.equal(replies.length, 1)

    // Past the per-host burst: the rest are dropped, not answered.
    const sent = STUN_RESPONSE_BURST_PER_HOST * 2
    for (let i = 0; i < sent; i++) client.send(bindingRequest(9), port, '127.0.0.1')
    await eventually('every request handled', () => server.stats.answered + server.stats.rateLimited === sent + 1)
    assert.ok(server.stats.rateLimited > 0, 'some requests were rate-limited')
    assert.ok(server.stats.answered - 1 < sent, 'not every request was answered')
  })

  it('ignores a binding request from source port 0 (a forged packet) instead of throwing from the socket handler', async t => {
    const defer = cleanups(t)
    const server = await StunServer.start({ host: '127.0.0.1', port: 0 })
    defer(async () => server.stop())
    // Sending from port 0 takes a raw socket; the socket's message handler is called as dgram would.
    const onMessage = (server as unknown as { onMessage: (msg: Buffer, address: string, port: number) => void }).onMessage.bind(server)
    assert.doesNotThrow(() => { onMessage(bindingRequest(5), '127.0.0.1', 0) })
    assert.equal(server.stats.ignored, 1)
    assert.equal(server.stats.answered, 0)
  })
})

describe('reach', { timeout: 180_000 }, () => {
  it('a peer behind NAT reserves a relay slot; a public one and a loopback-only one of unknown reachability do not', async t => {
    const defer = cleanups(t)
    const relay = await peer(t, defer, { reachability: 'public' })
    const pub = await peer(t, defer, { reachability: 'public' })
    const local = await peer(t, defer, {})
    const natted = await peer(t, defer, { reachability: 'behind-nat' })
    for (const p of [pub, local, natted]) await p.dial(relay.getMultiaddrs()[0])
    await eventually('a reservation on the relay', () => reachOf(natted).status().relays.includes(relay.peerId.toString()))
    const st = reachOf(natted).status()
    assert.equal(st.reachability, 'behind-nat')
    assert.ok(st.relayedAddresses.some(a => a.includes(`/p2p/${relay.peerId.toString()}/p2p-circuit`)))
    assert.deepEqual(st.publicAddresses, [])
    // The others had the same relay to hand and took no slot on it (the natted peer's reservation
    // came after theirs had every chance: all three identified the relay before it).
    assert.equal(reachOf(pub).reachability(), 'public')
    assert.equal(reachOf(local).reachability(), 'unknown')
    for (const p of [pub, local]) {
      assert.deepEqual(reachOf(p).status().relays, [])
      assert.ok(!p.getMultiaddrs().some(a => a.toString().includes('p2p-circuit')))
    }
    assert.deepEqual(reachOf(relay).connections(), { total: 3, direct: 3, relayed: 0, webrtc: 0 })
  })

  it('forgets a peer\'s used-up upgrade tries once it disconnects (the next meeting tries again; the map stays bounded)', async t => {
    const defer = cleanups(t)
    const a = await peer(t, defer, {})
    const b = await peer(t, defer, {})
    await a.dial(b.getMultiaddrs()[0])
    const attempts = (reachOf(a) as unknown as { attempts: Map<string, number> }).attempts
    attempts.set(b.peerId.toString(), UPGRADE_MAX_ATTEMPTS)
    await a.hangUp(b.peerId)
    await waiter({ timeoutMs: 5_000, intervalMs: 50 })('the tries forgotten', () => !attempts.has(b.peerId.toString()))
  })

  it('a relayed connection upgrades to WebRTC and new streams run on it', async t => {
    const defer = cleanups(t)
    const relay = await peer(t, defer, { reachability: 'public' })
    const hidden = await peer(t, defer, { listen: ['/p2p-circuit', '/webrtc'] })
    // The dialer listens on nothing either, so no TCP hole punch (DCUtR) can give a direct path: only WebRTC can.
    const dialer = await peer(t, defer, { listen: [] })
    await hidden.dial(relay.getMultiaddrs()[0])
    const relayed = await (async () => {
      await eventually('the hidden peer\'s relayed address', () => hidden.getMultiaddrs().some(a => a.toString().includes('p2p-circuit')))
      return hidden.getMultiaddrs().find(a => a.toString().includes('p2p-circuit') && !a.toString().includes('webrtc'))
    })()
    assert.ok(relayed != null)
    assert.ok(!hidden.getMultiaddrs().some(a => !a.toString().includes('p2p-circuit')), 'the hidden peer has no direct address')

    // A protocol that refuses limited connections: it can only run once a direct path exists.
    const protocol = '/peerverse/test/direct/1.0.0'
    await hidden.handle(protocol, async stream => { await stream.close() }, { runOnLimitedConnection: false })

    const first = await dialer.dial(multiaddr(relayed.toString()))
    assert.notEqual(first.limits, undefined, 'the first connection is relayed')
    assert.equal(connectionTransport(first), 'relay')
    assert.equal(await reachOf(dialer).waitForDirect(hidden.peerId, AbortSignal.timeout(90_000)), true)
    await eventually('a WebRTC connection', () => dialer.getConnections(hidden.peerId).some(c => connectionTransport(c) === 'webrtc' && c.limits == null))

    const stream = await dialer.dialProtocol(hidden.peerId, protocol)
    const conn = dialer.getConnections(hidden.peerId).find(c => c.streams.includes(stream))
    assert.equal(conn != null && connectionTransport(conn), 'webrtc')
    await stream.close()
    await eventually('the relayed connection closed', () => !dialer.getConnections(hidden.peerId).some(c => c.limits != null))
    const counts = reachOf(dialer).connections()
    assert.ok(counts.webrtc >= 1 && counts.direct >= 2)
  })
})

describe('pubsub across an upgrade', () => {
  it('messages still flow both ways once the relayed connection that carried the pubsub streams is closed for a direct one', async t => {
    const defer = cleanups(t)
    const relay = await peer(t, defer, { reachability: 'public' })
    const hidden = await peer(t, defer, { listen: ['/p2p-circuit', '/webrtc'] })
    const dialer = await peer(t, defer, { listen: [] })
    const topic = 'peerverse-test-upgrade'
    const got = { hidden: new Set<string>(), dialer: new Set<string>() }
    for (const [name, node] of [['hidden', hidden], ['dialer', dialer]] as const) {
      node.services.pubsub.subscribe(topic)
      node.services.pubsub.addEventListener('message', evt => { if (evt.detail.topic === topic) got[name].add(new TextDecoder().decode(evt.detail.data)) })
    }
    await hidden.dial(relay.getMultiaddrs()[0])
    await eventually('the hidden peer\'s relayed address', () => hidden.getMultiaddrs().some(a => a.toString().includes('p2p-circuit') && !a.toString().includes('webrtc')))
    const relayed = hidden.getMultiaddrs().find(a => a.toString().includes('p2p-circuit') && !a.toString().includes('webrtc'))
    assert.ok(relayed != null)
    const first = await dialer.dial(multiaddr(relayed.toString()))
    assert.notEqual(first.limits, undefined, 'the first connection is relayed')
    // Pubsub runs over the relayed connection first.
    await eventually('each side sees the other subscribed', () =>
      dialer.services.pubsub.getSubscribers(topic).some(p => p.equals(hidden.peerId)) && hidden.services.pubsub.getSubscribers(topic).some(p => p.equals(dialer.peerId)))
    assert.equal(await reachOf(dialer).waitForDirect(hidden.peerId, AbortSignal.timeout(90_000)), true)
    await eventually('only the direct connection left on both sides', () =>
      [dialer.getConnections(hidden.peerId), hidden.getConnections(dialer.peerId)].every(cs => cs.length > 0 && cs.every(c => c.limits == null)))
    let n = 0
    await eventually('a message from the dialer on the hidden peer', async () => {
      await dialer.services.pubsub.publish(topic, new TextEncoder().encode(`from dialer ${n++}`))
      return got.hidden.size > 0
    })
    await eventually('a message from the hidden peer on the dialer', async () => {
      await hidden.services.pubsub.publish(topic, new TextEncoder().encode(`from hidden ${n++}`))
      return got.dialer.size > 0
    })
  })
})

describe('AutoNAT dial-back', () => {
  it('opens a fresh connection to the one address asked about, and leaves the random walk\'s dials as they were', async () => {
    const calls: Array<{ peer: unknown, options: Record<string, unknown> }> = []
    const cm = {
      limit: 7,
      async openConnection (peer: unknown, options: Record<string, unknown> = {}) { calls.push({ peer, options }); return { peer } },
      getMaxConnections () { return this.limit }
    }
    const components = { connectionManager: cm, peerId: 'self' }
    const service = freshDialBack((c: typeof components) => c)(components)
    const one = multiaddr('/ip4/11.0.1.1/tcp/4001')
    await service.connectionManager.openConnection(one, { signal: undefined })
    await service.connectionManager.openConnection([one, multiaddr('/ip4/11.0.1.2/tcp/4001')], {})
    assert.equal(calls[0].options.force, true, 'the dial-back is a fresh connection')
    assert.equal(calls[1].options.force, undefined, 'a list of addresses (the random walk) may reuse a connection')
    assert.equal(service.connectionManager.getMaxConnections(), 7, 'the rest of the connection manager is the same')
    assert.equal(service.peerId, 'self')
  })
})

describe('DCUtR\'s unilateral upgrade', () => {
  it('finds no transport for an address through a relay (a relayed WebRTC address with a public IP included), and the usual one for a direct address', () => {
    const asked: string[] = []
    const tm = {
      dialTransportForMultiaddr (ma: ReturnType<typeof multiaddr>) { asked.push(ma.toString()); return 'a transport' },
      getAddrs () { return ['x'] }
    }
    const components = { transportManager: tm, peerId: 'self' }
    const service = directOnlyUnilateral((c: typeof components) => c)(components)
    const relayedWebrtc = multiaddr('/ip4/11.0.1.1/tcp/4001/p2p/12D3KooWMKqMtrNS6U31eLbFdEejH5upkvSivKVrZB4oLnvocvra/p2p-circuit/webrtc')
    const relayed = multiaddr('/ip4/11.0.1.1/tcp/4001/p2p/12D3KooWMKqMtrNS6U31eLbFdEejH5upkvSivKVrZB4oLnvocvra/p2p-circuit')
    assert.equal(service.transportManager.dialTransportForMultiaddr(relayedWebrtc), undefined, 'a relayed WebRTC address is not a direct one')
    assert.equal(service.transportManager.dialTransportForMultiaddr(relayed), undefined)
    assert.equal(service.transportManager.dialTransportForMultiaddr(multiaddr('/ip4/11.0.2.1/tcp/4001')), 'a transport')
    assert.deepEqual(asked, ['/ip4/11.0.2.1/tcp/4001'])
    assert.deepEqual(service.transportManager.getAddrs(), ['x'], 'the rest of the transport manager is the same')
    assert.equal(service.peerId, 'self')
  })
})

describe('memory of failed direct paths', () => {
  const relay = '12D3KooWMKqMtrNS6U31eLbFdEejH5upkvSivKVrZB4oLnvocvra'
  const peerId = '12D3KooWACZqoCuHi5Err3wWHEfRRudHkmoKfXxmhXerwS6bWDiH'

  it('names the peer a relayed WebRTC address leads to, and no peer for any other address', () => {
    assert.equal(relayedWebrtcTarget(multiaddr(`/ip4/11.0.1.1/tcp/4001/p2p/${relay}/p2p-circuit/webrtc/p2p/${peerId}`)), peerId)
    assert.equal(relayedWebrtcTarget(multiaddr(`/ip4/11.0.1.1/tcp/4001/p2p/${relay}/p2p-circuit/webrtc`)), undefined, 'without a target the last id is the relay\'s')
    assert.equal(relayedWebrtcTarget(multiaddr(`/ip4/11.0.1.1/tcp/4001/p2p/${relay}/p2p-circuit/p2p/${peerId}`)), undefined, 'the plain relayed address is kept')
    assert.equal(relayedWebrtcTarget(multiaddr(`/ip4/11.0.1.1/tcp/4001/p2p/${peerId}`)), undefined)
  })

  it('holds UPGRADE_FAILED_PEERS_MAX peers, forgets the oldest past it, and each after UPGRADE_FAILED_MEMORY_MS', () => {
    let now = 1_000
    const paths = new FailedPaths(UPGRADE_FAILED_PEERS_MAX, UPGRADE_FAILED_MEMORY_MS, () => now)
    for (let i = 0; i <= UPGRADE_FAILED_PEERS_MAX; i++) paths.add(`peer-${i}`)
    assert.equal(paths.size, UPGRADE_FAILED_PEERS_MAX)
    assert.equal(paths.has('peer-0'), false, 'the oldest is forgotten')
    assert.equal(paths.has('peer-1'), true)
    assert.equal(paths.has(`peer-${UPGRADE_FAILED_PEERS_MAX}`), true)
    // Adding again refreshes: peer-1 is now the newest, peer-2 the oldest.
    paths.add('peer-1')
    paths.add('one more')
    assert.equal(paths.has('peer-1'), true)
    assert.equal(paths.has('peer-2'), false)
    now += UPGRADE_FAILED_MEMORY_MS - 1
    assert.equal(paths.has('peer-3'), true)
    now += 1
    assert.equal(paths.has('peer-3'), false, 'forgotten once its time is up')
  })

  it('after UPGRADE_MAX_ATTEMPTS failed WebRTC dials to a peer, dials skip its relayed WebRTC address and keep its plain relayed one', async t => {
    const defer = cleanups(t)
    const relayPeer = await peer(t, defer, { reachability: 'public' })
    const dialer = await peer(t, defer, { listen: [] })
    // A peer that holds no slot on the relay: every WebRTC dial to it through the relay fails.
    const absent = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const viaRelay = `${relayPeer.getMultiaddrs()[0].toString()}/p2p-circuit`
    const webrtcAddr = multiaddr(`${viaRelay}/webrtc/p2p/${absent}`)
    const plainAddr = multiaddr(`${viaRelay}/p2p/${absent}`)
    const reach = reachOf(dialer)
    for (let i = 0; i < UPGRADE_MAX_ATTEMPTS; i++) {
      assert.equal(reach.skipsDial(webrtcAddr), false, `not skipped after ${i} failures`)
      await assert.rejects(dialer.dial(webrtcAddr, { signal: AbortSignal.timeout(30_000) }))
    }
    assert.equal(reach.skipsDial(webrtcAddr), true)
    assert.equal(reach.skipsDial(plainAddr), false, 'the plain relayed address is still dialled')
    await assert.rejects(dialer.dial(webrtcAddr), (err: Error) => err.name === 'DialDeniedError')
  })
})

describe('dials of a peer held only over a relay', () => {
  const relayPeer = '12D3KooWKMETbnj1U47ZVBgGutpWD45bwAXVXAV1cL57CmNq3dtP'
  const target = '12D3KooWJtKJVhwyiQZRPLTpwWqBywJSZKRxWjfowkUfmFVXEHrG'
  const relayedAddr = multiaddr(`/ip4/11.0.0.1/tcp/4001/p2p/${relayPeer}/p2p-circuit/p2p/${target}`)
  const webrtcAddr = multiaddr(`/ip4/11.0.0.1/tcp/4001/p2p/${relayPeer}/p2p-circuit/webrtc/p2p/${target}`)
  const conn = (limited: boolean, status = 'open'): Connection => ({ status, limits: limited ? { bytes: 1n } : undefined, remoteAddr: limited ? relayedAddr : multiaddr('/ip4/11.0.0.9/tcp/4001') }) as unknown as Connection
  const otherRelay = multiaddr(`/ip4/11.0.0.2/tcp/4001/p2p/12D3KooWRW7iyVJntGbtb93LPttFovhdLKKfPyvDs68nfoZafzeW/p2p-circuit/p2p/${target}`)

  it('take the limited connection when the dial could only give another relayed one, and let a dial that could go direct through', () => {
    const limited = conn(true)
    assert.equal(limitedToReuse([limited], [relayedAddr], []), limited, 'its relayed address again')
    assert.equal(limitedToReuse([limited], [], [relayedAddr, webrtcAddr, multiaddr('/ip4/10.2.0.2/tcp/4001')]), limited, 'by id, known only through relays and at private addresses')
    assert.equal(limitedToReuse([limited], [webrtcAddr], []), undefined, 'a WebRTC upgrade goes ahead')
    assert.equal(limitedToReuse([limited], [otherRelay], []), undefined, 'another relay\'s address is dialled')
    assert.equal(limitedToReuse([limited], [multiaddr('/ip4/127.0.0.1/tcp/4001')], []), undefined, 'an address not through a relay goes ahead')
    assert.equal(limitedToReuse([limited], [], [relayedAddr, multiaddr('/ip4/11.0.0.7/tcp/4001')]), undefined, 'by id, known at a public address')
    assert.equal(limitedToReuse([limited, conn(false)], [relayedAddr], []), undefined, 'an unlimited connection is libp2p\'s to hand back')
    assert.equal(limitedToReuse([conn(true, 'closing')], [relayedAddr], []), undefined, 'a closing connection is not reused')
    assert.equal(limitedToReuse([], [relayedAddr], []), undefined)
    assert.deepEqual(dialTarget([relayedAddr]).peer, target)
    assert.equal(dialTarget(multiaddr('/ip4/127.0.0.1/tcp/1')).peer, undefined)
  })

  it('by id and at the relayed address, on the relayed connection there is: no new circuit through the relay', async t => {
    const defer = cleanups(t)
    const relay = await peer(t, defer, { reachability: 'public' })
    const hidden = await peer(t, defer, { listen: ['/p2p-circuit'], webrtc: false })
    const dialer = await peer(t, defer, { listen: [], webrtc: false })
    await hidden.dial(relay.getMultiaddrs()[0])
    await eventually('the hidden peer\'s relayed address', () => hidden.getMultiaddrs().some(a => a.toString().includes('p2p-circuit')))
    const relayed = hidden.getMultiaddrs().find(a => a.toString().includes('p2p-circuit')) as ReturnType<typeof multiaddr>
    const first = await dialer.dial(relayed)
    assert.notEqual(first.limits, undefined, 'the first connection is relayed')
    await eventually('the dialer knows the hidden peer\'s relayed address', async () => (await dialer.peerStore.get(hidden.peerId)).addresses.some(a => a.multiaddr.toString().includes('p2p-circuit')))
    // A protocol that runs over relays, as the swarm's sessions do: its streams are opened by peer id.
    const protocol = '/peerverse/test/limited/1.0.0'
    await hidden.handle(protocol, async stream => { await stream.close() }, { runOnLimitedConnection: true })
    let opened = 0
    dialer.addEventListener('connection:open', () => { opened++ })
    for (let i = 0; i < 3; i++) {
      assert.equal((await dialer.dial(hidden.peerId)).id, first.id, 'by id')
      assert.equal((await dialer.dial(relayed)).id, first.id, 'at its relayed address')
      await dialer.services.ping.ping(hidden.peerId)
      const stream = await dialer.dialProtocol(hidden.peerId, protocol, { runOnLimitedConnection: true })
      assert.ok(first.streams.includes(stream), 'a stream by id runs on the relayed connection')
      await stream.close()
    }
    assert.equal(opened, 0, 'no connection was opened')
    assert.deepEqual(dialer.getConnections(hidden.peerId).map(c => c.id), [first.id])
    const inbound = hidden.getConnections(dialer.peerId)
    assert.equal(inbound.length, 1)
    assert.equal((await hidden.dial(dialer.peerId)).id, inbound[0].id, 'the other side dials back by id on the same connection')
    // force still opens a new one.
    const forced = await dialer.dial(relayed, { force: true })
    assert.notEqual(forced.id, first.id)
  })
})
