/**
 * The store on a full disk, with real LevelDB on a real tmpfs: a failed write is reported and
 * refused writes follow it, writes resume by themselves once space returns, and every write that
 * was acknowledged is there after a reopen (the failed one is not). Also the ballast, the low-disk
 * warning and why a store cannot open.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  BALLAST_FILE, BALLAST_MAX_FRACTION, LOW_DISK_BYTES, Store, STORE_DIR, StoreWriteError, type StoreChange
} from '../../src/store/store.ts'
import { defaultConfig, mergeConfig, validateConfig } from '../../src/node/config.ts'
import { cleanups, tempDir } from '../helpers/cleanup.ts'
import { waitFor } from '../helpers/cli-peer.ts'
import { fill, mountTmpfs, unfill } from './tmpfs.ts'

const key = (i: number): string => `k${String(i).padStart(6, '0')}`
const value = (i: number): Uint8Array => new TextEncoder().encode(`value ${i} `.padEnd(1000, '.'))
const MiB = 1024 * 1024
const same = (actual: Uint8Array | undefined, expected: Uint8Array): void => { assert.deepEqual(actual == null ? actual : Buffer.from(actual), Buffer.from(expected)) }

describe('store on a full disk', () => {
  it('refuses writes after one fails for want of space, resumes with no restart once space returns, and keeps every acknowledged write', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 32)
    if (mnt == null) return
    const dataDir = join(mnt, 'data')
    await mkdir(dataDir)
    const store = await Store.open(dataDir, { ballastBytes: 0, reopenRetryMs: 20 })
    defer(async () => store.close())
    const changes: StoreChange[] = []
    store.onChange(c => { changes.push(c) })
    const feed = store.sublevel('feed')
    const acked: number[] = []
    for (let i = 0; i < 20; i++) { await feed.put(key(i), value(i), { sync: true } as object); acked.push(i) }

    // A reader in the middle of an iteration when the write fails.
    const reader = feed.keys()
    assert.equal(await reader.next(), key(0))
    await fill(join(mnt, 'filler'))
    let failedAt = -1
    let failure: StoreWriteError | undefined
    for (let i = 20; i < 5000; i++) {
      try {
        await feed.put(key(i), value(i), { sync: true } as object)
        acked.push(i)
      } catch (err) {
        failedAt = i
        failure = err as StoreWriteError
        break
      }
    }
    assert.ok(failure != null, 'a write on the full disk fails')
    assert.equal(failure.name, 'StoreWriteError')
    assert.equal(failure.code, 'ENOSPC')
    assert.equal((failure.cause as { code?: string }).code, 'LEVEL_IO_ERROR')
    assert.equal(store.writable, false)
    assert.equal(store.lastError?.code, 'ENOSPC')
    assert.deepEqual(changes.filter(c => c.type === 'writable').map(c => c.type === 'writable' && c.writable), [false])

    // Refused at once while the disk is full, through the sublevel and through a batch; reads work.
    await assert.rejects(feed.put(key(9999), value(9999)), { name: 'StoreWriteError', code: 'ENOSPC' })
    await assert.rejects(feed.batch([{ type: 'put', key: key(9998), value: value(9998) }]), { name: 'StoreWriteError' })
    same(await feed.get(key(acked.at(-1)!)), value(acked.at(-1)!))
    assert.equal(store.writable, false, 'still refusing while nothing was freed')

    await unfill(join(mnt, 'filler'))
    await waitFor('the store accepts writes again', () => store.writable, 30_000, 20)
    assert.deepEqual(changes.filter(c => c.type === 'writable').map(c => c.type === 'writable' && c.writable), [false, true])
    assert.equal(await reader.next(), key(1), 'the repair kept the reader\'s iterator open')
    await reader.close()
    // The sublevel handed out before the reopen keeps working.
    for (let i = failedAt + 1; i < failedAt + 40; i++) { await feed.put(key(i), value(i), { sync: true } as object); acked.push(i) }
    same(await feed.get(key(failedAt + 1)), value(failedAt + 1))

    await store.close()
    const again = await Store.open(dataDir, { ballastBytes: 0 })
    defer(async () => again.close())
    const feed2 = again.sublevel('feed')
    const missing: number[] = []
    for (const i of acked) if ((await feed2.get(key(i))) === undefined) missing.push(i)
    assert.deepEqual(missing, [], 'every acknowledged write survives')
    assert.equal(await feed2.get(key(failedAt)), undefined, 'the failed write is not there')
  })

  it('when LevelDB keeps a sticky error (a table it could not write), the store reopens, and the sublevels handed out keep working', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 32)
    if (mnt == null) return
    const dataDir = join(mnt, 'data')
    await mkdir(dataDir)
    const store = await Store.open(dataDir, { ballastBytes: 0, reopenRetryMs: 20 })
    defer(async () => store.close())
    const kv = store.sublevel('kv')
    const acked: number[] = []
    for (let i = 0; i < 50; i++) { await kv.put(key(i), value(i)); acked.push(i) }
    await fill(join(mnt, 'filler'))
    let failed = -1
    for (let i = 50; i < 5000 && failed < 0; i++) {
      await kv.put(key(i), value(i), { sync: true } as object).then(() => { acked.push(i) }, () => { failed = i })
    }
    assert.ok(failed > 0)
    // A flush of the memtable on the full disk fails inside LevelDB, which then fails every write.
    await store.db.compactRange('\x00', '\x00')
    await unfill(join(mnt, 'filler'))
    await waitFor('the store accepts writes again', () => store.writable, 30_000, 20)
    for (let i = failed + 1; i < failed + 20; i++) { await kv.put(key(i), value(i), { sync: true } as object); acked.push(i) }
    await store.close()
    const again = await Store.open(dataDir, { ballastBytes: 0 })
    defer(async () => again.close())
    const kv2 = again.sublevel('kv')
    const missing: number[] = []
    for (const i of acked) if ((await kv2.get(key(i))) === undefined) missing.push(i)
    assert.deepEqual(missing, [])
    assert.equal(await kv2.get(key(failed)), undefined)
  })

  it('concurrent writes on a full disk: each one is either acknowledged and kept, or failed and absent', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 32)
    if (mnt == null) return
    const dataDir = join(mnt, 'data')
    await mkdir(dataDir)
    const store = await Store.open(dataDir, { ballastBytes: 0, reopenRetryMs: 20 })
    defer(async () => store.close())
    const kv = store.sublevel('kv')
    for (let i = 0; i < 20; i++) await kv.put(key(i), value(i))
    await fill(join(mnt, 'filler'))
    const results = await Promise.allSettled(Array.from({ length: 300 }, async (_, i) => {
      const n = 20 + i
      if (i % 3 === 0) await kv.batch([{ type: 'put', key: key(n), value: value(n) }, { type: 'put', key: key(n) + '/pair', value: value(n) }], { sync: true } as object)
      else await kv.put(key(n), value(n), { sync: i % 2 === 0 } as object)
    }))
    const failed = results.flatMap((r, i) => r.status === 'rejected' ? [20 + i] : [])
    assert.ok(failed.length > 0, 'some writes fail on the full disk')
    for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as Error).name, 'StoreWriteError')
    await unfill(join(mnt, 'filler'))
    await waitFor('the store accepts writes again', () => store.writable, 30_000, 20)
    await store.close()
    const again = await Store.open(dataDir, { ballastBytes: 0 })
    defer(async () => again.close())
    const kv2 = again.sublevel('kv')
    for (let i = 0; i < 320; i++) {
      const kept = (await kv2.get(key(i))) !== undefined
      assert.equal(kept, !failed.includes(i), `write ${i} was ${failed.includes(i) ? 'failed' : 'acknowledged'} but is ${kept ? '' : 'not '}there`)
      if ((i - 20) % 3 === 0 && i >= 20) assert.equal((await kv2.get(key(i) + '/pair')) !== undefined, kept, 'a batch is all or nothing')
    }
  })

  it('runs concurrent writes one at a time through sublevels, batches and chained batches', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'store-serial')
    const store = await Store.open(dir, { ballastBytes: 0 })
    defer(async () => store.close())
    const a = store.sublevel('a')
    const b = store.sublevel('b')
    await b.open()
    await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      if (i % 3 === 0) await a.put(key(i), value(i))
      else if (i % 3 === 1) await b.batch([{ type: 'put', key: key(i), value: value(i) }])
      else await b.batch().put(key(i), value(i)).write()
    }))
    let n = 0
    for await (const _ of a.keys()) n++
    for await (const _ of b.keys()) n++
    assert.equal(n, 200)
  })

  it('releases its ballast when a write finds the disk full, reopens on that room, and makes the ballast again once space returns', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 32)
    if (mnt == null) return
    const dataDir = join(mnt, 'data')
    await mkdir(dataDir)
    const store = await Store.open(dataDir, { reopenRetryMs: 20 })
    defer(async () => store.close())
    const ballast = join(dataDir, BALLAST_FILE)
    const size = Math.floor(32 * MiB * BALLAST_MAX_FRACTION)
    assert.equal((await stat(ballast)).size, size, 'the ballast is capped to a share of a small disk')
    assert.equal(store.status().ballastBytes, size)
    const kv = store.sublevel('kv')
    for (let i = 0; i < 10; i++) await kv.put(key(i), value(i), { sync: true } as object)

    await fill(join(mnt, 'filler'))
    let failed = false
    for (let i = 10; i < 5000 && !failed; i++) {
      await kv.put(key(i), value(i), { sync: true } as object).catch(err => { assert.equal(err.name, 'StoreWriteError'); failed = true })
    }
    assert.ok(failed)
    // The ballast's room is enough to reopen while the filler still takes the rest.
    await waitFor('the store reopened on the ballast room', () => store.writable, 30_000, 20)
    await assert.rejects(stat(ballast), { code: 'ENOENT' })
    assert.equal(store.status().ballastBytes, 0)
    await kv.put('after', value(1), { sync: true } as object)

    await unfill(join(mnt, 'filler'))
    await store.checkDisk()
    assert.equal((await stat(ballast)).size, size, 'the ballast is back once there is room')
  })

  it('warns when free space crosses below the setting and again when it is back above', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 32)
    if (mnt == null) return
    const store = await Store.open(mnt, { ballastBytes: 0, lowDiskBytes: 8 * MiB })
    defer(async () => store.close())
    const seen: Array<{ low: boolean, free: number }> = []
    store.onChange(c => { if (c.type === 'disk') seen.push({ low: c.disk.low, free: c.disk.free }) })
    assert.equal((await store.checkDisk())?.low, false)
    assert.equal(seen.length, 0, 'no warning while above the setting')
    await writeFile(join(mnt, 'big'), new Uint8Array(26 * MiB))
    assert.equal((await store.checkDisk())?.low, true)
    assert.equal(seen.length, 1)
    assert.ok(seen[0].low && seen[0].free < 8 * MiB)
    assert.equal((await store.checkDisk())?.low, true)
    assert.equal(seen.length, 1, 'one warning per crossing')
    await rm(join(mnt, 'big'))
    assert.equal((await store.checkDisk())?.low, false)
    assert.deepEqual(seen.map(s => s.low), [true, false])
    assert.equal(store.status().disk?.lowDiskBytes, 8 * MiB)
  })

  it('warns at once when the disk is already below the default setting (1 GiB) at start', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 32)
    if (mnt == null) return
    const store = await Store.open(mnt, { ballastBytes: 0 })
    defer(async () => store.close())
    const low = new Promise<StoreChange>(resolve => { store.onChange(resolve) })
    store.startMonitor()
    const change = await low
    assert.equal(change.type, 'disk')
    assert.equal(change.type === 'disk' && change.disk.low, true)
  })
})

describe('store settings', () => {
  it('default to LOW_DISK_BYTES and the default ballast, and must be whole numbers of bytes', () => {
    const config = defaultConfig('/tmp/x')
    assert.equal(config.store.lowDiskBytes, LOW_DISK_BYTES)
    assert.equal(LOW_DISK_BYTES, 1024 ** 3)
    assert.equal(validateConfig(mergeConfig(config, { store: { ballastBytes: 0 } })).store.ballastBytes, 0)
    assert.throws(() => validateConfig(mergeConfig(config, { store: { ballastBytes: -1 } })), { name: 'ConfigError', message: /store.ballastBytes/ })
    assert.throws(() => validateConfig(mergeConfig(config, { store: { lowDiskBytes: 1.5 } })), { name: 'ConfigError', message: /store.lowDiskBytes/ })
  })
})

describe('a store that cannot open says why', () => {
  it('no space left', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 2)
    if (mnt == null) return
    await fill(join(mnt, 'filler'))
    await assert.rejects(Store.open(join(mnt, 'data'), { ballastBytes: 0 }), (err: Error & { reason?: string }) => {
      assert.equal(err.name, 'StoreOpenError')
      assert.equal(err.reason, 'no-space')
      assert.match(err.message, /no space left/)
      assert.match(err.message, /Free some space/)
      return true
    })
  })

  it('no space left, but the ballast gives the room to open', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 32)
    if (mnt == null) return
    const dataDir = join(mnt, 'data')
    await mkdir(dataDir)
    const first = await Store.open(dataDir)
    await first.sublevel('kv').put('a', value(1), { sync: true } as object)
    await first.close()
    await fill(join(mnt, 'filler'))
    const again = await Store.open(dataDir)
    defer(async () => again.close())
    same(await again.sublevel('kv').get('a'), value(1))
  })

  it('read-only file system', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 1, 'ro')
    if (mnt == null) return
    await assert.rejects(Store.open(mnt, { ballastBytes: 0 }), { name: 'StoreOpenError', reason: 'permission', message: /permission denied or read-only/ })
  })

  it('corruption', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'store-corrupt')
    const store = await Store.open(dir, { ballastBytes: 0 })
    await store.sublevel('kv').put('a', value(1))
    await store.close()
    await writeFile(join(dir, STORE_DIR, 'CURRENT'), 'garbage')
    await assert.rejects(Store.open(dir, { ballastBytes: 0 }), { name: 'StoreOpenError', reason: 'corruption', message: /is corrupt.*move it aside/ })
  })

  it('a MANIFEST that is gone', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'store-manifest')
    const store = await Store.open(dir, { ballastBytes: 0 })
    await store.sublevel('kv').put('a', value(1))
    await store.close()
    for (const f of await readdir(join(dir, STORE_DIR))) {
      if (f.startsWith('MANIFEST-')) await rm(join(dir, STORE_DIR, f))
    }
    await assert.rejects(Store.open(dir, { ballastBytes: 0 }), { name: 'StoreOpenError', reason: 'corruption', message: /is corrupt.*MANIFEST/ })
  })

  it('locked by another process', async t => {
    const defer = cleanups(t)
    const dir = await tempDir(defer, 'store-locked')
    const store = await Store.open(dir, { ballastBytes: 0 })
    defer(async () => store.close())
    await assert.rejects(Store.open(dir), (err: Error & { reason?: string }) => {
      assert.equal(err.name, 'StoreLockedError')
      assert.equal(err.reason, 'locked')
      assert.match(err.message, /in use by another peerverse process/)
      return true
    })
  })
})
