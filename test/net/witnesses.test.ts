/**
 * Observed-address witnesses: an address other peers say they see us at reaches libp2p only once
 * OBSERVED_ADDRESS_MIN_WITNESSES distinct hosts said it, claims are bounded, a claim that names a
 * relay is never taken for our own relayed address, and the hosts that make us believe we are
 * behind a NAT are counted by host and capped.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createNetwork, reachOf } from '../../src/net/network.ts'
import { observedClaim, Witnesses } from '../../src/net/witnesses.ts'
import { OBSERVED_ADDRESS_MAX_CLAIMS, OBSERVED_ADDRESS_MIN_WITNESSES, REACH_NAT_OBSERVATIONS } from '../../src/net/limits.ts'
import { cleanups } from '../helpers/cleanup.ts'
import { releaseWebRTCAfterAll } from '../helpers/webrtc.ts'

releaseWebRTCAfterAll()

describe('witnesses of a claim', () => {
  it('confirms a claim at OBSERVED_ADDRESS_MIN_WITNESSES distinct witnesses, not before, and not by one witness saying it again', () => {
    const w = new Witnesses()
    for (let i = 0; i < 10; i++) assert.equal(w.add('/ip4/6.6.6.6/tcp/1', 'liar'), false)
    for (let i = 1; i < OBSERVED_ADDRESS_MIN_WITNESSES - 1; i++) assert.equal(w.add('/ip4/6.6.6.6/tcp/1', `host-${i}`), false)
    assert.equal(w.confirmed('/ip4/6.6.6.6/tcp/1'), false)
    assert.equal(w.add('/ip4/6.6.6.6/tcp/1', 'host-last'), true, 'the last witness needed confirms it')
    assert.equal(w.add('/ip4/6.6.6.6/tcp/1', 'one more'), false, 'confirmed once')
    assert.equal(w.confirmed('/ip4/6.6.6.6/tcp/1'), true)
  })

  it('holds OBSERVED_ADDRESS_MAX_CLAIMS claims and forgets the oldest past it', () => {
    const w = new Witnesses()
    for (let i = 0; i <= OBSERVED_ADDRESS_MAX_CLAIMS; i++) w.add(`claim-${i}`, 'a')
    assert.equal(w.size, OBSERVED_ADDRESS_MAX_CLAIMS)
    // claim-0 was forgotten with its witness: it starts again from none.
    for (let i = 1; i < OBSERVED_ADDRESS_MIN_WITNESSES; i++) w.add('claim-0', `w${i}`)
    assert.equal(w.confirmed('claim-0'), false)
    assert.equal(observedClaim(multiaddr('/ip4/6.6.6.6/tcp/1/p2p/12D3KooWJtKJVhwyiQZRPLTpwWqBywJSZKRxWjfowkUfmFVXEHrG')), '/ip4/6.6.6.6/tcp/1')
  })
})

describe('observed addresses on a running peer', () => {
  it('one lying peer cannot make us take or advertise an address; distinct hosts can make it a candidate, never a verified one', async t => {
    const defer = cleanups(t)
    const node = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], lanDht: false, webrtc: false })
    await node.start()
    defer(async () => node.stop())
    const reach = reachOf(node)
    const am = (node as unknown as { components: { addressManager: { addObservedAddr: (ma: Multiaddr) => void, getObservedAddrs: () => Multiaddr[] } } }).components.addressManager
    const relay = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    // A lie that names a relay: taken as ours, it would be advertised as our relayed address.
    const lie = multiaddr(`/ip4/6.6.6.6/tcp/4001/p2p/${relay}/p2p-circuit`)
    const onIdentify = (reach as unknown as { onIdentify: (evt: CustomEvent) => void }).onIdentify
    /** What identify does with one peer's message: tells the address manager, then announces the identify. */
    const report = async (witnessIp: string, observed: Multiaddr): Promise<void> => {
      const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
      am.addObservedAddr(observed)
      onIdentify(new CustomEvent('peer:identify', { detail: { peerId, observedAddr: observed, protocols: [], connection: { limits: undefined, remoteAddr: multiaddr(`/ip4/${witnessIp}/tcp/4001`) } } }))
    }
    // One host under many peer ids is one witness.
    for (let i = 0; i < 5; i++) await report('11.0.0.5', lie)
    assert.equal(reach.reachability(), 'unknown', 'one host is one NAT witness, short of REACH_NAT_OBSERVATIONS')
    for (let i = 1; i < OBSERVED_ADDRESS_MIN_WITNESSES - 1; i++) await report(`11.0.0.${10 + i}`, lie)
    node.safeDispatchEvent('self:peer:update', { detail: {} as never })
    assert.deepEqual(am.getObservedAddrs().map(String), [], 'not yet a candidate')
    assert.ok(!node.getMultiaddrs().some(a => a.toString().includes('6.6.6.6')), 'not advertised')
    await report('11.0.0.99', lie)
    assert.deepEqual(am.getObservedAddrs().map(String), [lie.toString()], 'a candidate once enough distinct hosts reported it')
    node.safeDispatchEvent('self:peer:update', { detail: {} as never })
    assert.ok(!node.getMultiaddrs().some(a => a.toString().includes('6.6.6.6')), 'a claim naming a relay is not confirmed as our relayed address')
    assert.equal(reach.reachability(), 'behind-nat', 'distinct hosts saw us at an address we do not have')
    const natWitnesses = (reach as unknown as { natWitnesses: Set<string> }).natWitnesses
    for (let i = 0; i < 20; i++) await report(`11.0.1.${i + 1}`, multiaddr('/ip4/6.6.6.7/tcp/4001'))
    assert.equal(natWitnesses.size, REACH_NAT_OBSERVATIONS, 'the NAT witnesses are capped')
    // Past the claims' cap: waiting claims are bounded.
    for (let i = 0; i < OBSERVED_ADDRESS_MAX_CLAIMS * 2; i++) am.addObservedAddr(multiaddr(`/ip4/7.0.${i >> 8}.${i & 255}/tcp/4001`))
    assert.ok((reach as unknown as { pendingObserved: Map<string, unknown> }).pendingObserved.size <= OBSERVED_ADDRESS_MAX_CLAIMS)
  })
})
