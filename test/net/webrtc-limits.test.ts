/**
 * Bounds on WebRTC between two peers (src/net/webrtc-limits.ts): signalling streams per peer,
 * and WebRTC connections per peer, past each bound; on loopback, a second WebRTC dial to a peer
 * already held over WebRTC is refused and one WebRTC connection stays.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Connection, Stream } from '@libp2p/interface'
import { createNetwork, reachOf, type Network, type NetworkInit } from '../../src/net/network.ts'
import { connectionTransport } from '../../src/net/reach.ts'
import { extraWebrtcConnections, PerPeerSlots, signalingLimit, WebRTCSignalingLimitError } from '../../src/net/webrtc-limits.ts'
import { WEBRTC_MAX_CONNECTIONS_PER_PEER, WEBRTC_MAX_SIGNALING_PER_PEER } from '../../src/net/limits.ts'
import { cleanups } from '../helpers/cleanup.ts'
import { waiter } from '../helpers/local-peers.ts'
import { releaseWebRTCAfterAll } from '../helpers/webrtc.ts'

releaseWebRTCAfterAll()

const eventually = waiter({ timeoutMs: 90_000, intervalMs: 50 })
const A = '12D3KooWJtKJVhwyiQZRPLTpwWqBywJSZKRxWjfowkUfmFVXEHrG'
const B = '12D3KooWKMETbnj1U47ZVBgGutpWD45bwAXVXAV1cL57CmNq3dtP'

/** A stream that records an abort and can be closed by the test. */
function fakeStream (): Stream & { aborted?: Error, end: () => void } {
  const target = new EventTarget() as EventTarget & { status: string, aborted?: Error, abort: (err: Error) => void, end: () => void }
  target.status = 'open'
  target.abort = (err: Error) => { target.aborted = err; target.status = 'aborted' }
  target.end = () => { target.status = 'closed'; target.dispatchEvent(new Event('close')) }
  return target as unknown as Stream & { aborted?: Error, end: () => void }
}

describe('WebRTC signalling per peer', () => {
  it('runs WEBRTC_MAX_SIGNALING_PER_PEER streams of one peer at once, refuses the next with WebRTCSignalingLimitError, and takes one again once one ends', () => {
    const slots = new PerPeerSlots(WEBRTC_MAX_SIGNALING_PER_PEER)
    const mw = signalingLimit(() => 0, slots)
    const conn = { remotePeer: peerIdFromString(A) } as unknown as Connection
    const other = { remotePeer: peerIdFromString(B) } as unknown as Connection
    const passed: Stream[] = []
    const next = (s: Stream): void => { passed.push(s) }
    const streams = Array.from({ length: WEBRTC_MAX_SIGNALING_PER_PEER + 1 }, () => fakeStream())
    for (const s of streams) void mw(s, conn, next)
    assert.equal(passed.length, WEBRTC_MAX_SIGNALING_PER_PEER)
    const refused = streams.at(-1)
    assert.ok(refused?.aborted instanceof WebRTCSignalingLimitError)
    assert.equal(refused?.aborted?.name, 'WebRTCSignalingLimitError')
    // Another peer has slots of its own.
    void mw(fakeStream(), other, next)
    assert.equal(passed.length, WEBRTC_MAX_SIGNALING_PER_PEER + 1)
    streams[0].end()
    const again = fakeStream()
    void mw(again, conn, next)
    assert.equal(again.aborted, undefined, 'a slot is free again once a stream ended')
    for (const s of [...streams.slice(1, -1), again]) s.end()
    assert.equal(slots.held(A), 0)
  })

  it('refuses every signalling stream of a peer that holds WEBRTC_MAX_CONNECTIONS_PER_PEER WebRTC connections with us', () => {
    const mw = signalingLimit(peer => peer === A ? WEBRTC_MAX_CONNECTIONS_PER_PEER : 0)
    const s = fakeStream()
    let passed = 0
    void mw(s, { remotePeer: peerIdFromString(A) } as unknown as Connection, () => { passed++ })
    assert.equal(passed, 0)
    assert.ok(s.aborted instanceof WebRTCSignalingLimitError)
  })
})

describe('WebRTC connections per peer', () => {
  it('past WEBRTC_MAX_CONNECTIONS_PER_PEER, both sides pick the same extras', () => {
    // The same two connections seen from A and from B: c1 dialled by A, c2 dialled by B.
    const fromA = [
      { id: 'c2', status: 'open', direction: 'inbound', remotePeer: peerIdFromString(B), timeline: { open: 1 } },
      { id: 'c1', status: 'open', direction: 'outbound', remotePeer: peerIdFromString(B), timeline: { open: 2 } }
    ] as unknown as Connection[]
    const fromB = [
      { id: 'c1', status: 'open', direction: 'inbound', remotePeer: peerIdFromString(A), timeline: { open: 5 } },
      { id: 'c2', status: 'open', direction: 'outbound', remotePeer: peerIdFromString(A), timeline: { open: 3 } }
    ] as unknown as Connection[]
    const a = extraWebrtcConnections(fromA, A).map(c => c.id)
    const b = extraWebrtcConnections(fromB, B).map(c => c.id)
    assert.equal(a.length, 2 - WEBRTC_MAX_CONNECTIONS_PER_PEER)
    assert.deepEqual(a, b)
    assert.deepEqual(extraWebrtcConnections(fromA.slice(0, WEBRTC_MAX_CONNECTIONS_PER_PEER), A), [], 'none past the bound, none closed')
  })
})

async function peer (t: { after: (fn: () => Promise<void>) => void }, defer: ReturnType<typeof cleanups>, init: Partial<NetworkInit>): Promise<Network> {
  const node = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], lanDht: false, ...init })
  await node.start()
  defer(async () => node.stop())
  return node
}

describe('WebRTC between two peers on loopback', { timeout: 180_000 }, () => {
  it('a WebRTC dial back from a peer already held over WebRTC is refused at its signalling, and one WebRTC connection stays', async t => {
    const defer = cleanups(t)
    const relay = await peer(t, defer, { reachability: 'public' })
    const hidden = await peer(t, defer, { listen: ['/p2p-circuit', '/webrtc'] })
    const dialer = await peer(t, defer, { listen: ['/p2p-circuit', '/webrtc'] })
    await hidden.dial(relay.getMultiaddrs()[0])
    await dialer.dial(relay.getMultiaddrs()[0])
    await eventually('the dialer\'s relayed WebRTC address', () => dialer.getMultiaddrs().some(a => a.toString().includes('/p2p-circuit/webrtc')))
    await eventually('the hidden peer\'s relayed address', () => hidden.getMultiaddrs().some(a => a.toString().includes('p2p-circuit') && !a.toString().includes('webrtc')))
    const relayed = hidden.getMultiaddrs().find(a => a.toString().includes('p2p-circuit') && !a.toString().includes('webrtc'))
    assert.ok(relayed != null)
    await dialer.dial(multiaddr(relayed.toString()))
    assert.equal(await reachOf(dialer).waitForDirect(hidden.peerId, AbortSignal.timeout(90_000)), true)
    const webrtc = (n: Network, other: Network): Connection[] => n.getConnections(other.peerId).filter(c => connectionTransport(c) === 'webrtc' && c.status === 'open')
    await eventually('one WebRTC connection on each side', () => webrtc(dialer, hidden).length === 1 && webrtc(hidden, dialer).length === 1)
    // The other way, at the dialer's own relayed WebRTC address (a crossed upgrade): its signalling is refused.
    const back = dialer.getMultiaddrs().find(a => a.toString().includes('/p2p-circuit/webrtc'))
    assert.ok(back != null, 'the dialer has a relayed WebRTC address')
    await assert.rejects(hidden.dial(back, { force: true, signal: AbortSignal.timeout(30_000) }))
    assert.ok(reachOf(dialer).signalingRefused >= 1, 'the dialer refused the signalling')
    assert.equal(webrtc(dialer, hidden).length, WEBRTC_MAX_CONNECTIONS_PER_PEER)
    assert.equal(webrtc(hidden, dialer).length, WEBRTC_MAX_CONNECTIONS_PER_PEER)
  })
})
