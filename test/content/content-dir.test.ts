/**
 * Our directory CIDs must be the ones ipfs-unixfs-importer (unixfs-v1-2025 profile) computes for
 * the same tree, we must never build a flat directory the importer would have sharded, and paths
 * must resolve through verified blocks only.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import * as dagPb from '@ipld/dag-pb'
import { importer } from 'ipfs-unixfs-importer'
import { MemoryBlockstore } from 'blockstore-core'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import {
  MAX_DIRECTORY_ENTRIES, MAX_NAME_BYTES, MAX_PATH_DEPTH, SHARD_SPLIT_THRESHOLD_BYTES,
  buildDirectory, fileTreeSize, listDirectory, resolvePath, type DirEntry
} from '../../src/content/directory.ts'
import { CHUNK_SIZE, MAX_LINKS_PER_NODE, importFile, type Block } from '../../src/content/unixfs.ts'
import { seededBytes } from '../helpers/random.ts'
import { utf8 } from '../helpers/bytes.ts'

/** A block map with the get and put our modules take. */
function memory (): { blocks: Map<string, Uint8Array>, put: (b: Block) => Promise<void>, get: (cid: CID) => Promise<Uint8Array> } {
  const blocks = new Map<string, Uint8Array>()
  return {
    blocks,
    put: async b => { blocks.set(b.cid.toString(), b.bytes) },
    get: async cid => {
      const b = blocks.get(cid.toString())
      if (b == null) throw new Error(`missing ${cid.toString()}`)
      return b
    }
  }
}

/** A file tree: bytes are files, objects are directories. */
interface Tree { [name: string]: Uint8Array | Tree }

/** Root CID of `tree` through ipfs-unixfs-importer, and the blockstore it wrote. */
async function reference (tree: Tree): Promise<{ cid: string, blockstore: MemoryBlockstore }> {
  const candidates: Array<{ path: string, content?: Uint8Array }> = []
  const walk = (t: Tree, prefix: string): void => {
    for (const [name, value] of Object.entries(t)) {
      if (value instanceof Uint8Array) candidates.push({ path: prefix + name, content: value })
      else if (Object.keys(value).length === 0) candidates.push({ path: prefix + name })
      else walk(value, prefix + name + '/')
    }
  }
  walk(tree, '')
  const blockstore = new MemoryBlockstore()
  let root = ''
  for await (const entry of importer(candidates, blockstore, { profile: 'unixfs-v1-2025', wrapWithDirectory: true })) {
    if (entry.path === '') root = entry.cid.toString()
  }
  return { cid: root, blockstore }
}

/** A block the importer wrote, read back whole. */
async function stored (blockstore: MemoryBlockstore, cid: CID): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const part of blockstore.get(cid)) parts.push(part)
  return Buffer.concat(parts)
}

/** Our root of `tree`, files through importFile with Tsize summed from their blocks. */
async function build (tree: Tree, put: (b: Block) => Promise<void>): Promise<{ cid: CID, size: number }> {
  const entries: DirEntry[] = []
  for (const [name, value] of Object.entries(tree)) {
    if (value instanceof Uint8Array) {
      let treeSize = 0
      const { cid, size } = await importFile([value], async b => { treeSize += b.bytes.length; await put(b) })
      assert.equal(fileTreeSize(size), treeSize, `fileTreeSize(${size})`)
      entries.push({ name, cid, size: treeSize })
    } else {
      entries.push({ name, ...await build(value, put) })
    }
  }
  return await buildDirectory(entries, put)
}

async function sameAsImporter (tree: Tree): Promise<CID> {
  const { put } = memory()
  const ours = await build(tree, put)
  assert.equal(ours.cid.toString(), (await reference(tree)).cid)
  return ours.cid
}


/** `n` distinct names of exactly MAX_NAME_BYTES bytes. */
function longNames (n: number): string[] {
  return Array.from({ length: n }, (_, i) => String(i).padStart(5, '0') + 'x'.repeat(MAX_NAME_BYTES - 5))
}

const dummyCid = CID.createV1(0x55, createDigest(sha256.code, new Uint8Array(32)))

describe('UnixFS directories match ipfs-unixfs-importer (unixfs-v1-2025)', () => {
  it('an empty directory', async () => {
    await sameAsImporter({})
    await sameAsImporter({ empty: {} })
  })

  it('one file', async () => {
    await sameAsImporter({ 'a.txt': utf8('hello') })
  })

  it('an empty file', async () => {
    await sameAsImporter({ 'empty.bin': new Uint8Array(0) })
  })

  it('names whose order is tricky: case, prefixes, UTF-8 against UTF-16 order', async () => {
    const names = ['b', 'B', 'a', 'A', 'a.b', 'ab', 'a-b', 'a_b', 'aa', 'Z', 'z', '~', ' space', '0', '10', '9',
      'é', 'e\u0301', 'ｆｕｌｌ', '😀', '日本', 'zz😀', 'zzｆ']
    const tree: Tree = {}
    for (const [i, name] of names.entries()) tree[name] = utf8(`file ${i}`)
    const { put, get } = memory()
    const { cid } = await build(tree, put)
    assert.equal(cid.toString(), (await reference(tree)).cid)
    const listed = await listDirectory(get, cid)
    // UTF-8 byte order, which is not JavaScript's UTF-16 order for 'ｆｕｌｌ' against '😀'.
    assert.deepEqual(listed.map(e => e.name), [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))))
    assert.ok(listed.findIndex(e => e.name === 'ｆｕｌｌ') < listed.findIndex(e => e.name === '😀'))
  })

  it('nested directories', async () => {
    await sameAsImporter({
      'README.md': utf8('# world'),
      models: { 'tree.glb': seededBytes(5000, 1), 'rock.gltf': utf8('{}'), lod: { 'tree-lod1.glb': seededBytes(700, 2) } },
      audio: { 'wind.ogg': seededBytes(3000, 3) },
      empty: {}
    })
  })

  it('files bigger than one chunk', async () => {
    await sameAsImporter({
      'big.bin': seededBytes(3 * CHUNK_SIZE + 12_345, 4),
      'exact.bin': seededBytes(2 * CHUNK_SIZE, 5),
      sub: { 'one-more.bin': seededBytes(CHUNK_SIZE + 1, 6), 'small.txt': utf8('small') }
    })
  })

  it(`${MAX_DIRECTORY_ENTRIES} entries with ${MAX_NAME_BYTES}-byte names stay flat`, async () => {
    const tree: Tree = {}
    for (const name of longNames(MAX_DIRECTORY_ENTRIES)) tree[name] = utf8(name.slice(0, 5))
    await sameAsImporter(tree)
  })
})

describe('directory size limits', () => {
  it(`MAX_DIRECTORY_ENTRIES worst-case links fit under the importer's shard threshold, one more does not`, () => {
    const encoded = (n: number): number => dagPb.encode(dagPb.prepare({
      Data: new UnixFS({ type: 'directory' }).marshal(),
      Links: longNames(n).map(Name => ({ Name, Tsize: Number.MAX_SAFE_INTEGER, Hash: dummyCid }))
    })).length
    assert.ok(encoded(MAX_DIRECTORY_ENTRIES) <= SHARD_SPLIT_THRESHOLD_BYTES)
    assert.ok(encoded(MAX_DIRECTORY_ENTRIES + 1) > SHARD_SPLIT_THRESHOLD_BYTES)
  })

  it('the importer shards exactly when the encoded node passes SHARD_SPLIT_THRESHOLD_BYTES', async () => {
    // 1-byte files under 255-byte names: each link is 301 encoded bytes, the Data field 4.
    const linkBytes = 301
    const flatMax = Math.floor((SHARD_SPLIT_THRESHOLD_BYTES - 4) / linkBytes)
    for (const [n, type] of [[flatMax, 'directory'], [flatMax + 1, 'hamt-sharded-directory']] as const) {
      const tree: Tree = {}
      for (const name of longNames(n)) tree[name] = new Uint8Array([n & 0xff])
      const { cid, blockstore } = await reference(tree)
      const bytes = await stored(blockstore, CID.parse(cid))
      assert.equal(UnixFS.unmarshal(dagPb.decode(bytes).Data!).type, type, `${n} entries`)
      if (type === 'directory') assert.equal(bytes.length, 4 + n * linkBytes)
    }
  })

  it('refuses more than MAX_DIRECTORY_ENTRIES entries', async () => {
    const entries = Array.from({ length: MAX_DIRECTORY_ENTRIES + 1 }, (_, i) => ({ name: `f${i}`, cid: dummyCid, size: 1 }))
    await assert.rejects(buildDirectory(entries, async () => {}), { name: 'DirectoryTooLargeError' })
    await buildDirectory(entries.slice(1), async () => {})
  })
})

describe('directory entry names', () => {
  const one = async (name: string): Promise<unknown> => await buildDirectory([{ name, cid: dummyCid, size: 0 }], async () => {})

  for (const bad of ['', '.', '..', 'a/b', '/', 'nul\0byte', 'x'.repeat(MAX_NAME_BYTES + 1), 'é'.repeat(128), 'lone\uD800']) {
    it(`refuses ${JSON.stringify(bad.length > 20 ? bad.slice(0, 8) + '…' : bad)}`, async () => {
      await assert.rejects(one(bad), { name: 'InvalidPathError' })
    })
  }

  it(`accepts a name of exactly ${MAX_NAME_BYTES} UTF-8 bytes, and '...' and '.hidden'`, async () => {
    await one('x'.repeat(MAX_NAME_BYTES))
    await one('é'.repeat(127) + 'x')
    await one('...')
    await one('.hidden')
  })

  it('refuses duplicate names', async () => {
    await assert.rejects(buildDirectory([
      { name: 'a', cid: dummyCid, size: 0 },
      { name: 'b', cid: dummyCid, size: 0 },
      { name: 'a', cid: dummyCid, size: 1 }
    ], async () => {}), { name: 'DuplicateNameError' })
  })

  it('refuses a bad size or CID', async () => {
    await assert.rejects(buildDirectory([{ name: 'a', cid: dummyCid, size: -1 }], async () => {}), TypeError)
    await assert.rejects(buildDirectory([{ name: 'a', cid: dummyCid, size: 1.5 }], async () => {}), TypeError)
    await assert.rejects(buildDirectory([{ name: 'a', cid: 'bafy' as never, size: 1 }], async () => {}), TypeError)
  })
})

describe('fileTreeSize', () => {
  it('equals the bytes of all blocks importFile writes', async () => {
    for (const size of [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 7 * CHUNK_SIZE + 3, MAX_LINKS_PER_NODE * CHUNK_SIZE + 1]) {
      let total = 0
      // Repeated chunks hash fast; Tsize counts a repeated block every time it is linked.
      const chunk = new Uint8Array(CHUNK_SIZE).fill(7)
      const source = function * (): Generator<Uint8Array> {
        for (let left = size; left > 0; left -= CHUNK_SIZE) yield chunk.subarray(0, Math.min(CHUNK_SIZE, left))
      }
      await importFile(source(), async b => { total += b.bytes.length })
      assert.equal(fileTreeSize(size), total, `${size} bytes`)
    }
  })

  it('refuses a bad size', () => {
    assert.throws(() => fileTreeSize(-1), TypeError)
    assert.throws(() => fileTreeSize(0.5), TypeError)
  })
})

describe('resolvePath and listDirectory', () => {
  const glb = seededBytes(2 * CHUNK_SIZE + 10, 7)
  const tree: Tree = {
    'index.json': utf8('{"spawn":[0,0,0]}'),
    models: { 'tree.glb': glb, lod: { 'tree-lod1.glb': utf8('lod') } },
    empty: {}
  }

  async function setup (): Promise<{ root: CID, get: (cid: CID) => Promise<Uint8Array>, blocks: Map<string, Uint8Array> }> {
    const { put, get, blocks } = memory()
    const { cid } = await build(tree, put)
    return { root: cid, get, blocks }
  }

  it('finds nested files and directories', async () => {
    const { root, get } = await setup()
    const { cid: glbCid } = await importFile([glb], async () => {})
    const found = await resolvePath(get, root, '/models/tree.glb')
    assert.equal(found.cid.toString(), glbCid.toString())
    assert.equal(found.name, 'tree.glb')
    assert.equal(found.kind, 'file')
    assert.equal((await resolvePath(get, root, 'models/lod/tree-lod1.glb')).kind, 'file')
    assert.equal((await resolvePath(get, root, '/models/lod/')).kind, 'directory')
    assert.equal((await resolvePath(get, root, '//models///lod')).name, 'lod')
    for (const p of ['', '/']) {
      const r = await resolvePath(get, root, p)
      assert.deepEqual([r.cid.toString(), r.name, r.kind], [root.toString(), '', 'directory'])
    }
    assert.equal((await resolvePath(get, root, '/empty')).kind, 'directory')
  })

  it('resolves through directories the importer made', async () => {
    const { cid, blockstore } = await reference(tree)
    const get = async (c: CID): Promise<Uint8Array> => await stored(blockstore, c)
    const found = await resolvePath(get, CID.parse(cid), '/models/lod/tree-lod1.glb')
    const { cid: want } = await importFile([utf8('lod')], async () => {})
    assert.equal(found.cid.toString(), want.toString())
  })

  it('lists a directory with names, CIDs and Tsizes', async () => {
    const { root, get } = await setup()
    const models = await resolvePath(get, root, '/models')
    const entries = await listDirectory(get, models.cid)
    assert.deepEqual(entries.map(e => e.name), ['lod', 'tree.glb'])
    assert.equal(entries[1].size, fileTreeSize(glb.length))
    assert.deepEqual(await listDirectory(get, (await resolvePath(get, root, 'empty')).cid), [])
  })

  it('names a missing path, walking into a file, and bad segments', async () => {
    const { root, get } = await setup()
    await assert.rejects(resolvePath(get, root, '/nope'), { name: 'PathNotFoundError' })
    await assert.rejects(resolvePath(get, root, '/models/lod/nope.glb'), { name: 'PathNotFoundError' })
    await assert.rejects(resolvePath(get, root, '/Models'), { name: 'PathNotFoundError' })
    await assert.rejects(resolvePath(get, root, '/models/tree.glb/x'), { name: 'NotADirectoryError' })
    await assert.rejects(resolvePath(get, root, '/index.json/x'), { name: 'NotADirectoryError' })
    await assert.rejects(listDirectory(get, (await resolvePath(get, root, '/models/tree.glb')).cid), { name: 'NotADirectoryError' })
    await assert.rejects(listDirectory(get, (await resolvePath(get, root, '/index.json')).cid), { name: 'NotADirectoryError' })
    await assert.rejects(resolvePath(get, root, '/models/../index.json'), { name: 'InvalidPathError' })
    await assert.rejects(resolvePath(get, root, '/./index.json'), { name: 'InvalidPathError' })
    await assert.rejects(resolvePath(get, root, '/a\0b'), { name: 'InvalidPathError' })
    await assert.rejects(resolvePath(get, root, '/a'.repeat(MAX_PATH_DEPTH + 1)), { name: 'InvalidPathError' })
    // Percent-decoding is the caller's: an encoded name is looked up as written.
    await assert.rejects(resolvePath(get, root, '/models%2Ftree.glb'), { name: 'PathNotFoundError' })
  })

  it('refuses a block that does not match its CID', async () => {
    const { root, blocks } = await setup()
    const get = async (c: CID): Promise<Uint8Array> => {
      const b = Uint8Array.from(blocks.get(c.toString())!)
      if (c.toString() !== root.toString()) b[b.length - 1] ^= 1
      return b
    }
    await assert.rejects(resolvePath(get, root, '/models/tree.glb'), { name: 'BlockVerificationError' })
  })

  it('refuses sharded directories it cannot read', async () => {
    const big: Tree = {}
    for (const name of longNames(MAX_DIRECTORY_ENTRIES + 100)) big[name] = utf8('x')
    const { cid, blockstore } = await reference(big)
    const get = async (c: CID): Promise<Uint8Array> => await stored(blockstore, c)
    await assert.rejects(resolvePath(get, CID.parse(cid), '/' + longNames(1)[0]), { name: 'UnsupportedContentError' })
    await assert.rejects(listDirectory(get, CID.parse(cid)), { name: 'UnsupportedContentError' })
  })

  it('stops when aborted', async () => {
    const { root, get } = await setup()
    const controller = new AbortController()
    controller.abort()
    await assert.rejects(resolvePath(get, root, '/models/tree.glb', { signal: controller.signal }), { name: 'AbortError' })
  })
})
