/**
 * Our content ids must be the ones any IPFS tool computes: the same bytes through
 * ipfs-unixfs-importer with the unixfs-v1-2025 profile give the same root CID.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { importer } from 'ipfs-unixfs-importer'
import { MemoryBlockstore } from 'blockstore-core'
import { CHUNK_SIZE, MAX_LINKS_PER_NODE, importFile, type Block } from '../../src/content/unixfs.ts'
import { seededBytes } from '../helpers/random.ts'

/** Feeds the bytes in uneven pieces, so chunking cannot lean on the caller's boundaries. */
function * pieces (bytes: Uint8Array): Generator<Uint8Array> {
  let offset = 0
  let n = 1
  while (offset < bytes.length) {
    const len = Math.min(n, bytes.length - offset)
    yield bytes.subarray(offset, offset + len)
    offset += len
    n = (n * 7 + 13) % 300_007
  }
}

async function reference (bytes: Uint8Array): Promise<string> {
  let root = ''
  for await (const entry of importer([{ content: pieces(bytes) }], new MemoryBlockstore(), { profile: 'unixfs-v1-2025' })) {
    root = entry.cid.toString()
  }
  return root
}

describe('UnixFS import (unixfs-v1-2025 profile)', () => {
  const sizes = [0, 1, 1000, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 12_345, MAX_LINKS_PER_NODE * CHUNK_SIZE + 1]
  for (const [i, size] of sizes.entries()) {
    it(`gives the same root CID as ipfs-unixfs-importer for ${size} bytes`, async () => {
      const bytes = seededBytes(size, i + 1)
      const stored = new Map<string, Uint8Array>()
      const result = await importFile(pieces(bytes), async (block: Block) => { stored.set(block.cid.toString(), block.bytes) })
      assert.equal(result.cid.toString(), await reference(bytes))
      assert.equal(result.size, size)
      assert.equal(result.blocks, stored.size, 'every block handed to put once')
      assert.ok(stored.has(result.cid.toString()), 'the root is stored')
    })
  }
})

describe('UnixFS range reads', () => {
  it('return exactly the requested bytes at random offsets, fetching only covering blocks (property)', async () => {
    const fc = (await import('fast-check')).default
    const { readFile } = await import('../../src/content/reader.ts')
    const size = 5 * CHUNK_SIZE + 777
    const bytes = seededBytes(size, 99)
    const store = new Map<string, Uint8Array>()
    const { cid } = await importFile([bytes], async b => { store.set(b.cid.toString(), b.bytes) })
    await fc.assert(fc.asyncProperty(fc.nat({ max: size }), fc.nat({ max: 3 * CHUNK_SIZE }), async (offset, length) => {
      let fetched = 0
      const get = async (c: { toString: () => string }): Promise<Uint8Array> => { fetched++; return store.get(c.toString())! }
      const parts: Uint8Array[] = []
      for await (const part of readFile(get as never, cid, { offset, length })) parts.push(part)
      const got = Buffer.concat(parts)
      const want = bytes.subarray(offset, Math.min(offset + length, size))
      assert.equal(Buffer.compare(got, want), 0)
      const leaves = want.length === 0 ? 0 : Math.floor((offset + want.length - 1) / CHUNK_SIZE) - Math.floor(offset / CHUNK_SIZE) + 1
      assert.ok(fetched <= leaves + 1, `fetched ${fetched} blocks for ${leaves} leaves`)
    }), { seed: 5, numRuns: 60 })
  })

  it('refuses a block that does not match its CID', async () => {
    const { readFile } = await import('../../src/content/reader.ts')
    const bytes = seededBytes(2 * CHUNK_SIZE + 5, 3)
    const store = new Map<string, Uint8Array>()
    const { cid } = await importFile([bytes], async b => { store.set(b.cid.toString(), b.bytes) })
    const get = async (c: { toString: () => string }): Promise<Uint8Array> => {
      const b = Uint8Array.from(store.get(c.toString())!)
      if (c.toString() !== cid.toString()) b[0] ^= 1
      return b
    }
    await assert.rejects(async () => { for await (const _ of readFile(get as never, cid)) { /* drain */ } }, { name: 'BlockVerificationError' })
    await assert.rejects(async () => { for await (const _ of readFile(get as never, cid, { offset: -1 })) { /* drain */ } }, { name: 'InvalidRangeError' })
  })
})
