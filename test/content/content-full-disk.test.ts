/**
 * Content on a full disk, on a real tmpfs mounted by the test (skipped with a message where it
 * cannot mount) with real LevelDB and real block files: an add that runs out of space fails with
 * DiskFullError and removes what it wrote, keeping the blocks held before; gc on a disk filled to
 * the last byte frees unpinned blocks and leftovers (also when LevelDB can no longer write), and
 * the index and the files agree afterwards.
 */
import { after, describe, it, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, open, readdir, readFile, rm, rmdir, statfs, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { BLOCKS_DIR, Blockstore } from '../../src/content/blockstore.ts'
import { CHUNK_SIZE, rawBlock } from '../../src/content/unixfs.ts'
import { createNode, type PeerverseNode } from '../../src/node/node.ts'
import { defaultConfig, mergeConfig } from '../../src/node/config.ts'
import { Store } from '../../src/store/store.ts'
import { cat } from '../helpers/bytes.ts'
import { PeerSet, runCli, waitFor } from '../helpers/cli-peer.ts'
import { cleanups } from '../helpers/cleanup.ts'
import { seededBytes } from '../helpers/random.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024
type Defer = (fn: () => Promise<unknown>) => void

/** Mounts a tmpfs of `mib` MiB on a fresh directory (unmounted when the test ends); undefined, with the test skipped, when mounting is not allowed here. */
export async function mountTmpfs (t: TestContext, defer: Defer, mib: number): Promise<string | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'peerverse-tmpfs-'))
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir])
  } catch (err) {
    await rmdir(dir)
    t.skip(`cannot mount a tmpfs here: ${(err as Error).message.split('\n')[0]}`)
    return undefined
  }
  defer(async () => { await run('umount', [dir]).catch(async () => await run('umount', ['-l', dir])); await rmdir(dir) })
  return dir
}

/** Writes a filler file until the disk has only `leave` bytes free (0: full to the last byte, checked with a 1-byte write). */
export async function fillDisk (dir: string, leave = 0): Promise<string> {
  const path = join(dir, `filler-${Math.random().toString(36).slice(2)}`)
  const handle = await open(path, 'w')
  try {
    const fs = await statfs(dir)
    let goal = Math.max(0, fs.bavail * fs.bsize - leave)
    const chunk = new Uint8Array(MiB).fill(7)
    while (goal > 0) {
      const n = Math.min(goal, chunk.length)
      await handle.write(chunk, 0, n)
      goal -= n
    }
    if (leave === 0) {
      // Whatever is left (a partly used page), byte by byte, until the disk refuses.
      for (;;) {
        try { await handle.write(chunk, 0, 1) } catch (err) { if ((err as { code?: string }).code === 'ENOSPC') break; throw err }
      }
    }
  } finally {
    await handle.close()
  }
  return path
}

/** A node that is built but never started, its data dir on `dir`; its store is closed when the test ends. */
async function offlineNode (defer: Defer, dir: string): Promise<PeerverseNode> {
  const node = await createNode(mergeConfig(defaultConfig(dir), { discovery: { mdns: false }, listen: ['/ip4/127.0.0.1/tcp/0'], api: false, dht: { mode: 'server' }, relay: { server: false } }))
  defer(async () => node.store.close())
  return node
}

/** Every name under DIR/blocks (block files and anything else), sorted. */
async function filesOnDisk (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const shard of await readdir(join(dir, BLOCKS_DIR)).catch(() => [] as string[])) out.push(...await readdir(join(dir, BLOCKS_DIR, shard)))
  return out.sort()
}

/** The block index as LevelDB holds it (keys of `b/` in the content sublevel), sorted. */
async function indexKeys (store: Store): Promise<string[]> {
  const out: string[] = []
  const db = store.db.sublevel<string, Uint8Array>('content', { keyEncoding: 'utf8', valueEncoding: 'view' })
  for await (const key of db.keys({ gte: 'b/', lt: 'b0' })) out.push(key.slice(2))
  return out.sort()
}

async function readAll (it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const p of it) parts.push(p)
  return cat(...parts)
}

function same (a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

describe('content on a full disk (tmpfs)', { timeout: 120_000 }, () => {
  it('an add that runs out of space fails with DiskFullError and removes what it wrote; blocks held or pinned before stay', async t => {
    const defer = cleanups(t)
    const disk = await mountTmpfs(t, defer, 48)
    if (disk == null) return
    const node = await offlineNode(defer, disk)
    const blocks = node.content['blockstore'] as Blockstore
    // Held before: a pinned file and an unpinned one.
    const pinned = seededBytes(3 * CHUNK_SIZE, 1)
    const loose = seededBytes(2 * CHUNK_SIZE + 100, 2)
    const a = await node.content.add(pinned, { name: 'pinned' })
    const b = await node.content.add(loose, { pin: false })
    const before = await filesOnDisk(disk)
    assert.equal(before.length, blocks.blockCount)
    assert.equal(blocks.blockCount, 4 + 4)
    // 24 MiB that shares its first leaf with the pinned file and its second with the loose one.
    const big = cat(pinned.subarray(0, CHUNK_SIZE), loose.subarray(0, CHUNK_SIZE), seededBytes(22 * CHUNK_SIZE, 3))
    const filler = await fillDisk(disk, 6 * MiB)

    await assert.rejects(node.content.add(big, { name: 'too big' }), (err: Error) => {
      assert.equal(err.name, 'DiskFullError')
      assert.equal((err as { code?: string }).code, 'ENOSPC')
      return true
    })
    // No block file of the failed add, no temporary file: exactly what was there before.
    assert.deepEqual(await filesOnDisk(disk), before)
    assert.equal(blocks.blockCount, before.length)
    assert.deepEqual([...blocks.cids()].map(String).sort(), before)
    assert.ok(same(await readAll(node.content.cat(a.cid)), pinned), 'the pinned file reads back whole')
    assert.ok(same(await readAll(node.content.cat(b.cid)), loose), 'the unpinned file held before reads back whole')
    assert.deepEqual((await node.content.pins()).map(p => p.cid), [a.cid.toString()])

    // With space again the same add succeeds; gc then leaves the index and the files in agreement.
    await rm(filler)
    const c = await node.content.add(big, { name: 'big' })
    assert.ok(same(await readAll(node.content.cat(c.cid)), big))
    const gc = await node.content.gc()
    assert.equal(gc.indexPending, 0)
    assert.deepEqual(await indexKeys(node.store), await filesOnDisk(disk))
  })

  it('gc on a disk filled to the last byte frees unpinned blocks, stray block files and temporary files', async t => {
    const defer = cleanups(t)
    const disk = await mountTmpfs(t, defer, 32)
    if (disk == null) return
    const node = await offlineNode(defer, disk)
    const blocks = node.content['blockstore'] as Blockstore
    const keep = seededBytes(2 * CHUNK_SIZE + 5, 10)
    const kept = await node.content.add(keep, { name: 'kept' })
    const keptBlocks = [...blocks.cids()].map(String)
    const loose = await node.content.add(seededBytes(5 * CHUNK_SIZE, 11), { pin: false })
    // Leftovers of a crash: a block file with no index entry and a temporary file.
    const stray = await rawBlock(seededBytes(CHUNK_SIZE, 12))
    const shard = join(disk, BLOCKS_DIR, stray.cid.toString().slice(-2))
    await mkdir(shard, { recursive: true })
    await writeFile(join(shard, stray.cid.toString()), stray.bytes)
    await writeFile(join(shard, `${stray.cid.toString()}.0123456789ab.tmp`), stray.bytes.subarray(0, 300_000))
    await fillDisk(disk)
    await assert.rejects(writeFile(join(disk, 'one-more-byte'), 'x'), { code: 'ENOSPC' })

    const result = await node.content.gc()
    assert.equal(result.removed, 6, 'the loose file: 5 leaves and its root')
    assert.equal(result.strays, 2)
    assert.ok(result.freed >= 5 * CHUNK_SIZE + CHUNK_SIZE + 300_000, `freed ${result.freed}`)
    assert.equal(result.indexPending, 0)
    assert.equal(blocks.has(loose.cid), false)
    assert.deepEqual(await filesOnDisk(disk), [...keptBlocks].sort())
    assert.deepEqual(await indexKeys(node.store), await filesOnDisk(disk))
    assert.ok(same(await readAll(node.content.cat(kept.cid)), keep))
  })

  it('gc after LevelDB writes have failed for lack of space frees the space and leaves index and files in agreement', async t => {
    const defer = cleanups(t)
    const disk = await mountTmpfs(t, defer, 32)
    if (disk == null) return
    const node = await offlineNode(defer, disk)
    const blocks = node.content['blockstore'] as Blockstore
    const kept = await node.content.add(seededBytes(CHUNK_SIZE + 7, 20), { name: 'kept' })
    const loose = await node.content.add(seededBytes(4 * CHUNK_SIZE, 21), { pin: false })
    await fillDisk(disk)
    // Pins until LevelDB cannot write (its log file may have a partly used page left): the failure is named.
    let failure: Error | undefined
    for (let i = 0; i < 10_000 && failure == null; i++) {
      const another = await rawBlock(seededBytes(10, 1000 + i))
      await blocks.pin({ cid: another.cid.toString(), size: 10, name: 'x'.repeat(200), pinnedAt: i }).catch((err: Error) => { failure = err })
    }
    assert.equal(failure?.name, 'DiskFullError', String(failure))
    // The store refuses writes until it has repaired LevelDB, on the room its ballast gave back.
    await waitFor('the store accepts writes again', () => node.store.writable, 30_000, 20)

    const result = await node.content.gc()
    assert.equal(result.removed, 5)
    assert.ok(result.freed >= 4 * CHUNK_SIZE, `freed ${result.freed}`)
    assert.equal(result.indexPending, 0)
    assert.equal(blocks.has(loose.cid), false)
    assert.ok(blocks.has(kept.cid))
    assert.deepEqual(await indexKeys(node.store), await filesOnDisk(disk))
  })

  it('index deletions LevelDB refuses are kept; the space is freed at once and the index catches up after a reopen', async t => {
    const defer = cleanups(t)
    const disk = await mountTmpfs(t, defer, 32)
    if (disk == null) return
    const store = await Store.open(disk)
    const blocks = await Blockstore.open(store.sublevel('content'), disk, 1024 * MiB)
    const made = []
    for (let i = 0; i < 3; i++) made.push(await rawBlock(seededBytes(CHUNK_SIZE, 30 + i)))
    for (const b of made) await blocks.put(b.cid, b.bytes)
    // Every LevelDB write now rejects (the database is closed under the block store).
    await store.close()
    const result = await blocks.sweep(new Set([made[0].cid.toString()]))
    assert.deepEqual(result, { removed: 2, freed: 2 * CHUNK_SIZE, strays: 0, indexPending: 2 })
    assert.deepEqual(await filesOnDisk(disk), [made[0].cid.toString()], 'the files are gone before their index entries')
    assert.deepEqual([...blocks.cids()].map(String), [made[0].cid.toString()])
    // A put whose index entry cannot be written leaves no file behind.
    const late = await rawBlock(seededBytes(1000, 40))
    await assert.rejects(blocks.put(late.cid, late.bytes))
    assert.deepEqual(await filesOnDisk(disk), [made[0].cid.toString()])

    const again = await Store.open(disk)
    defer(async () => again.close())
    assert.equal((await indexKeys(again)).length, 3, 'the refused deletions are still in the index')
    const reopened = await Blockstore.open(again.sublevel('content'), disk, 1024 * MiB)
    assert.deepEqual(await reopened.repair(), { removed: 0, freed: 0, strays: 0, indexPending: 0 })
    assert.deepEqual(await indexKeys(again), await filesOnDisk(disk))
    assert.deepEqual([...reopened.cids()].map(String), [made[0].cid.toString()])
    assert.equal(reopened.usedBytes, CHUNK_SIZE)
  })

  describe('a real peer on a tmpfs', () => {
    const set = new PeerSet()
    after(async () => { await set.cleanup() })

    it('peerverse add of a file or a directory that runs out of space fails (507 DiskFullError) and removes what it wrote; gc works on the full disk', async t => {
      const defer = cleanups(t)
      const disk = await mountTmpfs(t, defer, 64)
      if (disk == null) return
      defer(async () => { await set.cleanup() })
      const data = join(disk, 'peer')
      const peer = await set.start({ dataDir: data })
      const src = await set.tempDir()
      await writeFile(join(src, 'kept.bin'), seededBytes(2 * CHUNK_SIZE, 50))
      const kept = await runCli(['add', join(src, 'kept.bin'), '--data', data, '--json'])
      assert.equal(kept.code, 0, kept.stderr)
      const tree = join(src, 'tree')
      await mkdir(join(tree, 'sub'), { recursive: true })
      await writeFile(join(tree, 'a.bin'), seededBytes(4 * CHUNK_SIZE, 51))
      await writeFile(join(tree, 'sub', 'b.bin'), seededBytes(3 * CHUNK_SIZE, 52))
      await writeFile(join(tree, 'z.bin'), seededBytes(24 * CHUNK_SIZE, 53))
      const before = await filesOnDisk(data)
      const filler = await fillDisk(disk, 12 * MiB)

      const dir = await runCli(['add', tree, '--data', data])
      assert.equal(dir.code, 1, dir.stdout)
      assert.match(dir.stderr, /no space left/)
      assert.deepEqual(await filesOnDisk(data), before, 'the files added before the one that failed are gone too')
      const file = await runCli(['add', join(tree, 'z.bin'), '--data', data])
      assert.equal(file.code, 1)
      assert.match(file.stderr, /no space left/)
      const res = await peer.api.raw('POST', '/api/v0/content/add', { body: await readFile(join(tree, 'z.bin')), headers: { 'content-type': 'application/octet-stream' } })
      assert.equal(res.status, 507)
      assert.equal(((await res.json()) as { error: string }).error, 'DiskFullError')
      assert.deepEqual(await filesOnDisk(data), before)
      const store = await peer.api.request<{ blocks: number }>('GET', '/api/v0/content/store')
      assert.equal(store.blocks, before.length)

      // An unpinned file, then the disk full to the last byte: gc still works and frees it.
      await rm(filler)
      const loose = await runCli(['add', join(tree, 'a.bin'), '--no-pin', '--data', data])
      assert.equal(loose.code, 0, loose.stderr)
      await fillDisk(disk)
      const gc = await runCli(['gc', '--data', data, '--json'])
      assert.equal(gc.code, 0, gc.stderr)
      assert.equal((JSON.parse(gc.stdout) as { removed: number }).removed, 5, 'four leaves and the root')
      assert.deepEqual(await filesOnDisk(data), before)
      assert.equal(await set.stop(peer), 0)
    })
  })
})
