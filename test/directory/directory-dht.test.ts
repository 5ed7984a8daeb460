/**
 * The directory's ways in for a newcomer, between real nodes in one process on 127.0.0.1: a peer
 * that holds listings provides the well-known DHT key (so a newcomer finds it through any DHT
 * peer), and a newcomer syncs the listings over /peerverse/directory/1.0.0 from a peer it asks,
 * with the owner's listing arriving checked and whole; a peer asking too often is refused.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { DIRECTORY_KEY, SYNC_REQUEST_BURST } from '../../src/directory/index.ts'
import type { PeerverseNode } from '../../src/node/node.ts'
import { LocalPeers, waiter } from '../helpers/local-peers.ts'

const tcpAddr = (n: PeerverseNode): string => n.addresses().find(a => a.includes('/tcp/')) as string
const eventually = waiter({ timeoutMs: 30_000, intervalMs: 250 })

describe('directory through the DHT and sync', () => {
  const peers = new LocalPeers('directory-dht')
  after(async () => { await peers.stop() })

  it('a holder of listings provides the directory key, and a newcomer syncs the listings from it', async () => {
    const a = await peers.startNode()
    const x = await peers.startNode()
    const n = await peers.startNode()
    await x.connect(tcpAddr(a))
    await n.connect(tcpAddr(x))
    const hall = await a.space.create({ name: 'Hall' })
    const listed = await a.directory.publish(hall.id, { tags: ['talks'] })
    assert.equal(listed.present, 1)

    const providers = new Set<string>()
    await eventually('N to find A as a provider of the directory key', async () => {
      for await (const p of n.routing.findProviders(DIRECTORY_KEY, { signal: AbortSignal.timeout(5_000) })) providers.add(p.peer)
      return providers.has(a.peerId)
    })

    // A newcomer that asks A gets the listing, checked.
    const m = await peers.startNode()
    await m.connect(tcpAddr(a))
    await m.directory.syncWith(a.peerId)
    await eventually('M to hold the listing', () => m.directory.list().some(l => l.space === hall.id))
    const seen = m.directory.list().find(l => l.space === hall.id)
    assert.equal(seen?.name, 'Hall')
    assert.deepEqual(seen?.tags, ['talks'])
    assert.equal(seen?.owner, a.did)
    assert.ok(seen?.link.includes(a.peerId))
  })

  it(`a peer that asks for syncs faster than SYNC_REQUEST_BURST (${SYNC_REQUEST_BURST}) allows is refused and reported`, async () => {
    const a = await peers.startNode()
    const q = await peers.startNode()
    await q.connect(tcpAddr(a))
    let refused = 0
    for (let i = 0; i < SYNC_REQUEST_BURST + 3; i++) await q.directory.syncWith(a.peerId).catch(() => { refused++ })
    assert.ok(refused >= 2, `refused ${refused}`)
    await eventually('A to report Q', () => (peers.rejections.get(a) ?? []).some(r => r.peerId === q.peerId && /DirectoryRateLimitError/.test(r.error)))
  })
})
