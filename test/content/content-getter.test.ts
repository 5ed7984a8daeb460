/**
 * Two requests for the same root share one swarm download. When one of them is aborted while the
 * other is between blocks (it holds the download but waits on nothing), the aborted one halts the
 * shared download; the other's next block must then come through a fresh download rather than
 * fail with the closed one's "download closed". Two real nodes on 127.0.0.1; the request's block
 * getter is reached directly, since the window between two blocks cannot be hit from outside.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import type { CID } from 'multiformats/cid'
import type { Download } from '../../src/content/swarm.ts'
import { CHUNK_SIZE, importFile } from '../../src/content/unixfs.ts'
import { LocalPeers } from '../helpers/local-peers.ts'
import { seededBytes } from '../helpers/random.ts'

type GetBlock = (cid: CID, options: { signal?: AbortSignal }) => Promise<Uint8Array>
interface Internals {
  getter: (root: CID, options?: object) => { get: GetBlock, download: () => Download }
  swarm: { halt: (d: Download) => void }
}

describe('a shared download halted by another request', () => {
  const peers = new LocalPeers('getter')
  after(async () => { await peers.stop() })

  it('the request still waiting gets its next block through a fresh download', async () => {
    const holder = await peers.startNode()
    const reader = await peers.startNode()
    const data = seededBytes(3 * CHUNK_SIZE, 7)
    const { cid: root } = await holder.content.add(data)
    const leaves: CID[] = []
    await importFile([data], async b => { if (b.cid.code === 0x55) leaves.push(b.cid) })
    assert.equal(leaves.length, 3)
    await reader.connect(holder.addresses()[0] as string, { signal: AbortSignal.timeout(20_000) })

    const svc = reader.content as unknown as Internals
    const { get, download } = svc.getter(root)
    const signal = AbortSignal.timeout(20_000)
    assert.ok((await get(root, { signal })).length > 0, 'the root came from the holder')
    const first = download()
    // The other request was aborted: it halts the download no one waits on.
    svc.swarm.halt(first)
    assert.equal(first.closed, true)
    const leaf = await get(leaves[0] as CID, { signal })
    assert.equal(leaf.length, CHUNK_SIZE)
    assert.deepEqual(leaf, data.subarray(0, CHUNK_SIZE))
    assert.notEqual(download(), first, 'a fresh download took the halted one\'s place')
    assert.equal(download().closed, false)
  })
})
