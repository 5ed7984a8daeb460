/**
 * The parts of finding peers on a LAN, one module at a time: the bound on peers mDNS finds
 * (remembered and dialled per step, this peer itself never), the address filters of the two DHTs,
 * the LAN DHT's place among the guarded protocols, the discovery setting, and the status fields
 * each DHT and mDNS show on real nodes on 127.0.0.1.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { removePublicAddressesMapper } from '@libp2p/kad-dht'
import { multiaddr } from '@multiformats/multiaddr'
import { Discovery, LanCandidates, MAX_ADDRESSES_PER_CANDIDATE, MDNS_DIALS_PER_INTERVAL, MDNS_MAX_REMEMBERED, TARGET_PEERS } from '../../src/net/discovery.ts'
import { DHT_PROTOCOL, GUARDED_PROTOCOLS, LAN_DHT_PROTOCOL, wanPeerInfoMapper, type Network } from '../../src/net/network.ts'
import { ConfigError, defaultConfig, mergeConfig, validateConfig } from '../../src/node/config.ts'
import { DHT_MAX_MESSAGE_BYTES } from '../../src/net/limits.ts'
import { LocalPeers, waiter } from '../helpers/local-peers.ts'
import { seeded } from '../helpers/random.ts'

const rand = seeded(0x1a9)

async function newPeerId (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', rand.bytes(32)))
}

const LAN_ADDR = multiaddr('/ip4/10.77.0.9/tcp/4001')

/** A stand-in for the network, with only what Discovery's mDNS step touches (a unit test of Discovery). */
function fakeNet (self: PeerId, connected: PeerId[] = []): { net: Network, dialled: string[], mdns: EventTarget } {
  const dialled: string[] = []
  const mdns = new EventTarget()
  const net = {
    peerId: self,
    services: { mdns },
    getPeers: () => connected,
    getConnections: (peer?: PeerId) => connected.filter(p => peer == null || p.equals(peer)).map(() => ({})),
    peerStore: { merge: async () => {} },
    dial: async (peer: PeerId) => { dialled.push(peer.toString()); return {} }
  }
  return { net: net as unknown as Network, dialled, mdns }
}

/** Waits (a few turns of the event loop) until the fake network saw `n` dials. */
async function waitDials (dialled: string[], n: number): Promise<void> {
  for (let i = 0; i < 100 && dialled.length < n; i++) await new Promise(resolve => setImmediate(resolve))
}

describe('peers found by mDNS', () => {
  it(`are remembered up to MDNS_MAX_REMEMBERED (${MDNS_MAX_REMEMBERED}), oldest forgotten first, this peer never`, async () => {
    const self = await newPeerId()
    const lan = new LanCandidates(self)
    assert.equal(lan.add(self, [LAN_ADDR]), false, 'this peer itself is not remembered')
    assert.equal(lan.add(await newPeerId(), []), false, 'a peer with no address is not remembered')
    const ids: PeerId[] = []
    for (let i = 0; i < MDNS_MAX_REMEMBERED + 20; i++) {
      const id = await newPeerId()
      ids.push(id)
      assert.equal(lan.add(id, [LAN_ADDR]), true)
    }
    assert.equal(lan.size, MDNS_MAX_REMEMBERED)
    const taken = lan.take(MDNS_MAX_REMEMBERED * 2, () => false)
    assert.equal(taken.length, MDNS_MAX_REMEMBERED)
    assert.equal(taken[0].peer.toString(), ids[20].toString(), 'the 20 oldest were forgotten')
    assert.equal(lan.size, 0)

    const many = Array.from({ length: MAX_ADDRESSES_PER_CANDIDATE + 5 }, (_, i) => multiaddr(`/ip4/10.77.0.${i + 1}/tcp/4001`))
    lan.add(ids[0], many)
    assert.equal(lan.take(1, () => false)[0].addresses.length, MAX_ADDRESSES_PER_CANDIDATE)
  })

  it(`are dialled at most MDNS_DIALS_PER_INTERVAL (${MDNS_DIALS_PER_INTERVAL}) a step, connected peers skipped`, async () => {
    const self = await newPeerId()
    const connected = await newPeerId()
    const { net, dialled, mdns } = fakeNet(self, [connected])
    const discovery = new Discovery(net, [])
    // Found through the service's events while started.
    discovery.start()
    mdns.dispatchEvent(new CustomEvent('peer', { detail: { id: self, multiaddrs: [LAN_ADDR] } }))
    mdns.dispatchEvent(new CustomEvent('peer', { detail: { id: connected, multiaddrs: [LAN_ADDR] } }))
    const found: PeerId[] = []
    for (let i = 0; i < 10; i++) {
      found.push(await newPeerId())
      mdns.dispatchEvent(new CustomEvent('peer', { detail: { id: found[i], multiaddrs: [LAN_ADDR] } }))
    }
    // A malformed event is ignored.
    mdns.dispatchEvent(new CustomEvent('peer', { detail: { id: 'not a peer id', multiaddrs: 7 } }))
    discovery.stop()
    assert.equal(discovery.lan.size, 11, 'every peer but this one is remembered (the connected one until a step skips it)')

    const signal = new AbortController().signal
    assert.equal(discovery.dialLanPeers(signal), MDNS_DIALS_PER_INTERVAL)
    await waitDials(dialled, MDNS_DIALS_PER_INTERVAL)
    assert.deepEqual(dialled, found.slice(0, MDNS_DIALS_PER_INTERVAL).map(String), 'the connected peer was skipped')
    assert.equal(discovery.dialLanPeers(signal), MDNS_DIALS_PER_INTERVAL)
    await waitDials(dialled, 2 * MDNS_DIALS_PER_INTERVAL)
    assert.ok(!dialled.includes(self.toString()) && !dialled.includes(connected.toString()))
    assert.equal(discovery.lanDials, 2 * MDNS_DIALS_PER_INTERVAL)
    assert.equal(discovery.lan.size, 10 - 2 * MDNS_DIALS_PER_INTERVAL)
  })

  it('are not dialled at TARGET_PEERS connections, and only up to it below', async () => {
    const self = await newPeerId()
    const peers: PeerId[] = []
    for (let i = 0; i < TARGET_PEERS; i++) peers.push(await newPeerId())
    const full = fakeNet(self, peers)
    const atTarget = new Discovery(full.net, [])
    atTarget.lan.add(await newPeerId(), [LAN_ADDR])
    assert.equal(atTarget.dialLanPeers(new AbortController().signal), 0)

    const oneShort = fakeNet(self, peers.slice(1))
    const below = new Discovery(oneShort.net, [])
    for (let i = 0; i < 5; i++) below.lan.add(await newPeerId(), [LAN_ADDR])
    assert.equal(below.dialLanPeers(new AbortController().signal), 1)
  })
})

describe('the two DHTs', () => {
  it('the LAN DHT keeps private and loopback addresses only; the WAN DHT drops them in auto mode only', async () => {
    const id = await newPeerId()
    const addrs = ['/ip4/127.0.0.1/tcp/1', '/ip6/::1/tcp/1', '/ip4/10.1.2.3/tcp/1', '/ip4/192.168.1.2/tcp/1', '/ip4/8.8.8.8/tcp/1'].map(a => multiaddr(a))
    const kept = (mapper: typeof removePublicAddressesMapper): string[] => mapper({ id, multiaddrs: addrs }).multiaddrs.map(String)
    assert.deepEqual(kept(removePublicAddressesMapper), addrs.slice(0, 4).map(String))
    assert.deepEqual(kept(wanPeerInfoMapper('auto')), ['/ip4/8.8.8.8/tcp/1'])
    assert.deepEqual(kept(wanPeerInfoMapper('server')), addrs.map(String))
    assert.deepEqual(kept(wanPeerInfoMapper('client')), addrs.map(String))
  })

  it('the LAN DHT protocol is guarded with the WAN one\'s frame limit', () => {
    const lan = GUARDED_PROTOCOLS.find(([p]) => p === LAN_DHT_PROTOCOL)
    const wan = GUARDED_PROTOCOLS.find(([p]) => p === DHT_PROTOCOL)
    assert.deepEqual(lan?.slice(1), [DHT_MAX_MESSAGE_BYTES])
    assert.deepEqual(lan?.slice(1), wan?.slice(1))
  })
})

describe('the discovery setting', () => {
  it('mDNS is on by default; discovery.mdns must be true or false', () => {
    assert.equal(validateConfig(defaultConfig('/tmp/x')).discovery.mdns, true)
    assert.equal(validateConfig(mergeConfig(defaultConfig('/tmp/x'), { discovery: { mdns: false } })).discovery.mdns, false)
    assert.equal(validateConfig(mergeConfig(defaultConfig('/tmp/x'), { discovery: {} })).discovery.mdns, true)
    assert.throws(() => validateConfig(mergeConfig(defaultConfig('/tmp/x'), { discovery: { mdns: 'yes' as unknown as boolean } })), (err: Error) => err instanceof ConfigError && /discovery\.mdns/.test(err.message))
  })
})

describe('status of the DHTs and mDNS on real nodes', { timeout: 120_000 }, () => {
  const local = new LocalPeers('lan-discovery')
  const eventually = waiter({ timeoutMs: 60_000, intervalMs: 200 })
  after(async () => { await local.stop() })

  it('shows each DHT\'s mode and routing table size, and mDNS off', async () => {
    const a = await local.startNode()
    const b = await local.startNode()
    assert.deepEqual(a.status().dht, { wan: { mode: 'server', peers: 0 }, lan: { mode: 'server', peers: 0 } })
    assert.equal(a.status().mdns, false)
    await a.connect(b.addresses()[0])
    await eventually('both routing tables of a hold b', () => a.status().dht.lan.peers === 1 && a.status().dht.wan.peers === 1)
    const found = await a.findPeer(b.peerId, { signal: AbortSignal.timeout(30_000) })
    assert.ok(found.addresses.length > 0)
  })
})
