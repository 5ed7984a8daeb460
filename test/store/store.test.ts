import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Key } from 'interface-datastore'
import { Store } from '../../src/store/store.ts'
import { LevelDatastore } from '../../src/store/datastore.ts'
import { createNode } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig } from '../../src/node/config.ts'

async function withDir (fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'peerverse-store-'))
  try {
    await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

describe('store', () => {
  it('keeps services apart in sublevels and persists across reopen', async () => withDir(async dir => {
    const store = await Store.open(dir)
    const a = store.sublevel('alpha')
    const b = store.sublevel('beta')
    assert.throws(() => store.sublevel('alpha'), /already taken/)
    assert.throws(() => store.sublevel('Bad Name'), /invalid sublevel/)
    await a.put('k', Uint8Array.of(1))
    assert.equal(await b.get('k'), undefined)
    await store.close()
    const again = await Store.open(dir)
    assert.deepEqual([...(await again.sublevel('alpha').get('k'))!], [1])
    await again.close()
    await again.close()
  }))

  it('refuses a second process-level open of the same data dir', async () => withDir(async dir => {
    const store = await Store.open(dir)
    try {
      await assert.rejects(Store.open(dir), { name: 'StoreLockedError' })
    } finally {
      await store.close()
    }
  }))

  it('serves libp2p as a datastore: put, get, has, delete, batch, prefix query', async () => withDir(async dir => {
    const store = await Store.open(dir)
    const ds = new LevelDatastore(store.sublevel('net'))
    await ds.put(new Key('/peers/a'), Uint8Array.of(1))
    await ds.put(new Key('/peers/b'), Uint8Array.of(2))
    await ds.put(new Key('/other/c'), Uint8Array.of(3))
    assert.deepEqual([...await ds.get(new Key('/peers/a'))], [1])
    assert.equal(await ds.has(new Key('/peers/zz')), false)
    await assert.rejects(async () => ds.get(new Key('/peers/zz')), { name: 'NotFoundError' })
    const batch = ds.batch()
    batch.put(new Key('/peers/d'), Uint8Array.of(4))
    batch.delete(new Key('/peers/a'))
    await batch.commit()
    const keys: string[] = []
    for await (const { key } of ds.query({ prefix: '/peers' })) keys.push(key.toString())
    assert.deepEqual(keys.sort(), ['/peers/b', '/peers/d'])
    await store.close()
  }))
})

describe('node lifecycle', () => {
  it('start and stop are safe to call twice, and the store is closed on stop', async () => withDir(async dir => {
    const node = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false }))
    await Promise.all([node.start(), node.start()])
    await node.start()
    assert.equal(node.started, true)
    assert.ok(node.addresses().some(a => a.startsWith('/ip4/127.0.0.1/tcp/')))
    await node.stop()
    await node.stop()
    assert.equal(node.started, false)
    assert.equal(node.store.db.status, 'closed')
    // The data dir is free again: the same identity comes back.
    const again = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false }))
    assert.equal(again.peerId, node.peerId)
    assert.equal(again.did, node.did)
    await again.store.close()
  }))
})
