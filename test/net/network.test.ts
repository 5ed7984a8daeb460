/**
 * Ten real peers, each a `peerverse start` process on loopback, told only the first one as bootstrap.
 * They must come to know each other through the DHT, gossip must reach all (each message once,
 * though copies come from several mesh peers), and killing the bootstrap (kill -9) must lose
 * nothing. A restarted peer keeps its peer id and did. GossipSub's fast message id (the signature)
 * is checked on its own first.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { GOSSIP_IDONTWANT_MIN_BYTES, GOSSIP_MAX_MESSAGE_BYTES } from '../../src/net/limits.ts'
import { createNetwork, gossipFastMsgId } from '../../src/net/network.ts'
import { PeerSet, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { EventLog } from '../helpers/events.ts'

const PEERS = 10
const TOPIC = 'peerverse/test/network'
const set = new PeerSet()
const peers: CliPeer[] = []
const logs = new Map<CliPeer, EventLog>()
/** Every text published so far: each may reach a peer's handler once at most, ever. */
const sent: string[] = []

interface PeersResponse { peers: Array<{ peerId: string, did?: string }> }

async function connectedIds (p: CliPeer): Promise<Set<string>> {
  const { peers } = await p.api.request<PeersResponse>('GET', '/api/v0/peers')
  return new Set(peers.map(x => x.peerId))
}

async function subscribeAll (group: CliPeer[]): Promise<void> {
  for (const p of group) await p.api.request('POST', '/api/v0/gossip/subscribe', { topic: TOPIC })
}

/** Publishes once the publisher knows every other member subscribes, then waits until all have it. */
async function gossipReachesAll (from: CliPeer, group: CliPeer[], text: string): Promise<void> {
  const others = group.filter(p => p !== from)
  let missing: string[] = []
  await waitFor(`${text}: publisher sees ${others.length} subscribers`, async () => {
    const { peers } = await from.api.request<{ peers: string[] }>('GET', `/api/v0/gossip/peers?topic=${encodeURIComponent(TOPIC)}`)
    missing = others.filter(o => !peers.includes(o.ready.peerId)).map(o => o.ready.peerId)
    return missing.length === 0
  }).catch(err => { throw new Error(`${(err as Error).message}; missing ${missing.join(', ')}`) })
  sent.push(text)
  const { recipients } = await from.api.request<{ recipients: number }>('POST', '/api/v0/gossip/publish', { topic: TOPIC, data: text })
  assert.ok(recipients > 0)
  await waitFor(`${text} delivered to ${others.length} peers`, () => others.every(o => logs.get(o)!.gossip(TOPIC).includes(text)))
  // Delivered once, though copies come from each mesh peer; and no earlier message came again since.
  for (const o of group) {
    const got = logs.get(o)!.gossip(TOPIC)
    for (const t of sent) {
      const n = got.filter(x => x === t).length
      if (t === text) assert.equal(n, o === from ? 0 : 1, `${o.ready.peerId} got "${t}" ${n} times`)
      else assert.ok(n <= 1, `${o.ready.peerId} got "${t}" ${n} times`)
    }
  }
}

/**
 * Every peer of `group` finds every other through a DHT network lookup (never its local cache).
 * The peers look up side by side, each its own lookups one after another.
 */
async function allFindAllThroughDht (group: CliPeer[]): Promise<Set<string>> {
  const answeredBy = new Set<string>()
  await Promise.all(group.map(async a => {
    for (const b of group) {
      if (a === b) continue
      const found = await waitFor(`${a.ready.peerId} finds ${b.ready.peerId}`, async () =>
        a.api.request<{ addresses: string[], from: string }>('GET', `/api/v0/dht/peer/${b.ready.peerId}`), 20_000)
      const port = b.addr.split('/tcp/')[1].split('/')[0]
      assert.ok(found.addresses.some(x => x.includes(`/tcp/${port}`)), `${b.ready.peerId}'s TCP address ${port} in ${found.addresses.join(',')}`)
      answeredBy.add(found.from)
    }
  }))
  return answeredBy
}

describe('a network with no centre', { timeout: 300_000 }, () => {
  before(async () => {
    const first = await set.start()
    peers.push(first)
    // The other nine start together, each told only the first.
    peers.push(...await Promise.all(Array.from({ length: PEERS - 1 }, async () => await set.start({ bootstrap: [first.addr] }))))
    for (const p of peers) logs.set(p, await EventLog.open(p))
  })

  after(async () => {
    for (const log of logs.values()) log.close()
    await set.cleanup()
  })

  it('ten peers told only the bootstrap come to know each other', async () => {
    await waitFor('every peer connected to every other', async () => {
      for (const p of peers) {
        const ids = await connectedIds(p)
        if (!peers.every(o => o === p || ids.has(o.ready.peerId))) return false
      }
      return true
    }, 90_000)
    // Each knows the others as users too: the signed peer binding names their did.
    for (const p of peers) {
      await waitFor('dids of all peers', async () => {
        const { peers: list } = await p.api.request<PeersResponse>('GET', '/api/v0/peers')
        return peers.every(o => o === p || list.find(x => x.peerId === o.ready.peerId)?.did === o.ready.did)
      })
    }
  })

  it('every peer finds every other through the DHT, answered by many peers', async () => {
    const answeredBy = await allFindAllThroughDht(peers)
    assert.ok(answeredBy.size > 1, `lookups were answered by ${answeredBy.size} distinct peers`)
  })

  it('a gossip message from any peer reaches all', async () => {
    await subscribeAll(peers)
    await gossipReachesAll(peers[3], peers, 'hello from peer 3')
    await gossipReachesAll(peers[0], peers, 'hello from the bootstrap')
  })

  it('after kill -9 of the bootstrap the other nine stay connected, find each other and gossip', async () => {
    const [bootstrap, ...rest] = peers
    await set.kill(bootstrap)
    await waitFor('the bootstrap is gone from every peer', async () => {
      for (const p of rest) if ((await connectedIds(p)).has(bootstrap.ready.peerId)) return false
      return true
    })
    await waitFor('peer:disconnect events for the bootstrap', () => rest.every(p => logs.get(p)!.events.some(e => e.type === 'peer:disconnect' && e.peerId === bootstrap.ready.peerId)))
    for (const p of rest) {
      const ids = await connectedIds(p)
      assert.ok(rest.every(o => o === p || ids.has(o.ready.peerId)), `${p.ready.peerId} still connected to all the others`)
    }
    await gossipReachesAll(rest[4], rest, 'after the bootstrap died')
    const answeredBy = await allFindAllThroughDht(rest)
    assert.ok(!answeredBy.has(bootstrap.ready.peerId))
  })

  it('a restarted peer keeps its peer id and did and rejoins without the bootstrap', async () => {
    const old = peers[6]
    const rest = peers.slice(1).filter(p => p !== old)
    assert.equal(await set.stop(old), 0)
    logs.get(old)!.close()
    // Same data dir, dead bootstrap: it finds its way back through the peers it remembers.
    const again = await set.start({ dataDir: old.dataDir, bootstrap: [peers[0].addr] })
    assert.equal(again.ready.peerId, old.ready.peerId)
    assert.equal(again.ready.did, old.ready.did)
    logs.set(again, await EventLog.open(again))
    await waitFor('restarted peer reconnected', async () => (await connectedIds(again)).size >= 3)
    await again.api.request('POST', '/api/v0/gossip/subscribe', { topic: TOPIC })
    await gossipReachesAll(rest[0], [...rest, again], 'welcome back')
  })
})

describe('GossipSub fast message id', () => {
  it('is the signature: equal bytes give one id wherever they sit, other bytes another, no signature none', () => {
    const sig = Uint8Array.from({ length: 64 }, (_, i) => (i * 37 + 11) & 0xff)
    const id = gossipFastMsgId({ signature: sig })
    assert.equal(typeof id, 'string')
    // Another array with the same bytes, and views into larger buffers at a nonzero offset.
    const big = new Uint8Array(300)
    big.fill(0xee)
    big.set(sig, 37)
    const view = big.subarray(37, 37 + 64)
    assert.notEqual(view.byteOffset, 0)
    const pooled = Buffer.from(sig)
    for (const same of [Uint8Array.from(sig), view, pooled]) assert.equal(gossipFastMsgId({ signature: same }), id)
    // Only the signature counts (under StrictSign it covers the sender, sequence number, topic and data).
    assert.equal(gossipFastMsgId({ signature: view, data: new Uint8Array(10), topic: 'other' } as { signature: Uint8Array }), id)
    // Any other signature: another id, including one byte changed, a prefix, and a view one byte off.
    const ids = new Set([id])
    for (let i = 0; i < 64; i += 9) {
      const other = Uint8Array.from(sig)
      other[i] ^= 1
      ids.add(gossipFastMsgId({ signature: other }))
    }
    ids.add(gossipFastMsgId({ signature: sig.subarray(0, 63) }))
    ids.add(gossipFastMsgId({ signature: big.subarray(36, 36 + 64) }))
    ids.add(gossipFastMsgId({ signature: big.subarray(38, 38 + 64) }))
    assert.equal(ids.size, 1 + 8 + 3)
    // No signature, or an empty one (also as an empty view into a buffer): no fast id, so the
    // library checks the message in full (and StrictSign refuses it).
    for (const msg of [{}, { signature: undefined }, { signature: new Uint8Array(0) }, { signature: big.subarray(5, 5) }]) {
      assert.equal(gossipFastMsgId(msg), undefined)
    }
  })

  it('is what the GossipSub service uses, with IDONTWANT from GOSSIP_IDONTWANT_MIN_BYTES on', async () => {
    // Below the largest message, or IDONTWANT would never be sent.
    assert.ok(GOSSIP_IDONTWANT_MIN_BYTES > 0 && GOSSIP_IDONTWANT_MIN_BYTES <= GOSSIP_MAX_MESSAGE_BYTES)
    const net = await createNetwork({ privateKey: await generateKeyPair('Ed25519'), listen: ['/ip4/127.0.0.1/tcp/0'], relayServer: false })
    try {
      // GossipSub's own fields (not part of its typed API): the options it was built with.
      const pubsub = net.services.pubsub as unknown as { fastMsgIdFn?: unknown, opts: { idontwantMinDataSize: number } }
      assert.equal(pubsub.fastMsgIdFn, gossipFastMsgId)
      assert.equal(pubsub.opts.idontwantMinDataSize, GOSSIP_IDONTWANT_MIN_BYTES)
    } finally {
      await net.stop()
    }
  })
})
