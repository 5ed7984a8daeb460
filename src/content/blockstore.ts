/**
 * Node-only: block files on disk (node:fs). The one file of the content capability that imports a
 * node: module; the rest reaches it through the ContentBlockstore interface (blocks.ts).
 *
 * The local block store: verified blocks as files, an index and pins in the node's LevelDB.
 *
 * Block bytes live one file per block under `DIR/blocks/<shard>/<cid>` (as Kubo's flatfs does),
 * because LevelDB rewrites large values during compaction: on this machine LevelDB took 1 MiB
 * blocks at about 240 MiB/s against about 1400 MiB/s for files, and the swarm must outrun it.
 * A file is written under a temporary name and renamed into place, so a crash leaves either the
 * whole block or none; the index entry is written after the rename. Every block is checked
 * against its CID before it is stored and again when it is read back, so a damaged file is
 * treated as missing, never returned.
 *
 * A write that fails (a full disk: DiskFullError) removes what it wrote, its temporary file and
 * its block file, so the index never names a file that is not there. Deleting frees space before
 * it needs any: block files are unlinked first, then their index entries go in small batches; an
 * index deletion LevelDB cannot write yet is kept and tried again, and the block is forgotten in
 * memory at once. `repair` (on start and after every sweep) removes what a crash or a failed write
 * left behind: temporary files, block files with no index entry, index entries with no file.
 *
 * The `content` sublevel holds: `b/<cid>` the block index (size), `p/<cid>` pins, `d/<cid>`
 * downloads in progress (kept from garbage collection across restarts, with their attempts),
 * `r/<cid>` roots we announce as a provider.
 */
import { lstat, mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { logger } from '@libp2p/logger'
import { CID } from 'multiformats/cid'
import type { BytesSublevel } from '../store/store.ts'
import {
  BlockNotFoundError, BlockTooLargeError, decodeCid, DiskFullError, diskError, GC_WATERMARK, InvalidCidError, MAX_BLOCK_BYTES, parseCid, StoreFullError,
  type ContentBlockstore, type DownloadRecord, type PinInfo, type PutOptions, type SweepResult
} from './blocks.ts'
import { verifyBlock } from './reader.ts'

const log = logger('peerverse:content')

export const BLOCKS_DIR = 'blocks'
/** Index deletions written in one LevelDB batch (small, so a nearly full disk can take it). */
export const INDEX_DELETE_BATCH = 64

export {
  BlockNotFoundError, BlockTooLargeError, decodeCid, DiskFullError, GC_WATERMARK, InvalidCidError, MAX_BLOCK_BYTES, parseCid, StoreFullError,
  type DownloadRecord, type PinInfo, type PutOptions, type SweepResult
}

/** A block file name: a CID string (base32, lower case). */
const BLOCK_NAME = /^[a-z0-9]+$/

export class Blockstore implements ContentBlockstore {
  private readonly db: BytesSublevel
  private readonly dir: string
  readonly maxBytes: number
  private used = 0
  private count = 0
  /** Called when usage passes the watermark; returns once unpinned blocks have been collected. */
  onPressure?: () => Promise<void>
  private readonly sizes = new Map<string, number>()
  /** Blocks being written now (their temporary and block files are not leftovers). */
  private readonly writing = new Map<string, Promise<void>>()
  /** Index entries of deleted blocks whose deletion LevelDB has not taken yet. */
  private readonly staleIndex = new Set<string>()

  private constructor (db: BytesSublevel, dir: string, maxBytes: number) {
    this.db = db
    this.dir = dir
    this.maxBytes = maxBytes
  }

  /** Opens the store over the `content` sublevel and the data dir's blocks directory. */
  static async open (db: BytesSublevel, dataDir: string, maxBytes: number): Promise<Blockstore> {
    const dir = join(dataDir, BLOCKS_DIR)
    await mkdir(dir, { recursive: true })
    const store = new Blockstore(db, dir, maxBytes)
    for await (const [key, value] of db.iterator({ gte: 'b/', lt: 'b0' })) {
      const size = decodeSize(value)
      store.sizes.set(key.slice(2), size)
      store.used += size
      store.count++
    }
    return store
  }

  get usedBytes (): number { return this.used }
  get blockCount (): number { return this.count }

  private path (key: string): string {
    return join(this.dir, key.slice(-2), key)
  }

  has (cid: CID): boolean {
    return this.sizes.has(cid.toString())
  }

  /** has() by the CID's string form. */
  hasKey (key: string): boolean {
    return this.sizes.has(key)
  }

  /** Size of a held block, or undefined. */
  sizeOf (cid: CID): number | undefined {
    return this.sizes.get(cid.toString())
  }

  /**
   * Stores a block after checking it against its CID. Storing a held block is a no-op. On a full
   * disk it throws DiskFullError and leaves neither a temporary file nor a block file behind.
   */
  async put (cid: CID, bytes: Uint8Array, options: PutOptions = {}): Promise<void> {
    if (bytes.length > MAX_BLOCK_BYTES) throw new BlockTooLargeError(`block of ${bytes.length} bytes is over ${MAX_BLOCK_BYTES}`)
    if (options.verified !== true) await verifyBlock(cid, bytes)
    const key = cid.toString()
    if (this.sizes.has(key)) return
    const running = this.writing.get(key)
    if (running != null) return await running
    if (this.used + bytes.length > this.maxBytes * GC_WATERMARK && this.onPressure != null) await this.onPressure()
    if (this.sizes.has(key)) return
    if (this.used + bytes.length > this.maxBytes) throw new StoreFullError(`store holds ${this.used} bytes; limit ${this.maxBytes}`)
    const write = this.write(key, bytes, options.durable === true)
    this.writing.set(key, write)
    try {
      await write
    } finally {
      this.writing.delete(key)
    }
  }

  private async write (key: string, bytes: Uint8Array, durable: boolean): Promise<void> {
    const path = this.path(key)
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`
    try {
      await mkdir(join(this.dir, key.slice(-2)), { recursive: true })
      const handle = await open(tmp, 'w')
      try {
        await handle.writeFile(bytes)
        if (durable) await handle.sync()
      } finally {
        await handle.close()
      }
      await rename(tmp, path)
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {})
      throw diskError(err, `store block ${key}`)
    }
    this.staleIndex.delete(key)
    try {
      await this.db.put('b/' + key, encodeSize(bytes.length), syncIf(durable))
    } catch (err) {
      // No index entry: the file goes too, so the index and the files agree.
      await rm(path, { force: true }).catch(() => {})
      throw diskError(err, `index block ${key}`)
    }
    this.sizes.set(key, bytes.length)
    this.used += bytes.length
    this.count++
  }

  /** Reads a held block, checked against its CID; BlockNotFoundError when absent or damaged. */
  async get (cid: CID): Promise<Uint8Array> {
    const key = cid.toString()
    if (!this.sizes.has(key)) throw new BlockNotFoundError(`block ${key} is not held here`)
    let bytes: Uint8Array
    try {
      bytes = await readFile(this.path(key))
      await verifyBlock(cid, bytes)
    } catch (err) {
      if ((err as Error).name === 'UnsupportedContentError') throw err
      // A missing or damaged file: forget the block so it is fetched again.
      await this.delete(cid)
      throw new BlockNotFoundError(`block ${key} was damaged on disk and has been dropped`)
    }
    return bytes
  }

  async delete (cid: CID): Promise<void> {
    await this.deleteMany([cid])
  }

  /**
   * Deletes held blocks: forgets them, unlinks their files (freeing space), then deletes their
   * index entries in batches of INDEX_DELETE_BATCH. An index deletion that fails is kept for the
   * next flush (a block file is gone before its entry, never the other way round). Returns bytes freed.
   */
  async deleteMany (cids: Iterable<CID>): Promise<number> {
    const keys: string[] = []
    let freed = 0
    for (const cid of cids) {
      const key = cid.toString()
      const size = this.sizes.get(key)
      if (size == null) continue
      this.sizes.delete(key)
      this.used -= size
      this.count--
      freed += size
      keys.push(key)
    }
    for (const key of keys) {
      await unlink(this.path(key)).catch(err => { if ((err as { code?: string }).code !== 'ENOENT') log('unlink of block %s failed: %s', key, (err as Error).message) })
      this.staleIndex.add(key)
    }
    await this.flushIndex()
    return freed
  }

  /** Writes the pending index deletions, a small batch at a time; stops at the first failure. */
  private async flushIndex (): Promise<void> {
    while (this.staleIndex.size > 0) {
      const batch = [...this.staleIndex].slice(0, INDEX_DELETE_BATCH)
      try {
        await this.db.batch(batch.map(key => ({ type: 'del' as const, key: 'b/' + key })))
      } catch (err) {
        log('%d index deletions wait: %s', this.staleIndex.size, (err as Error).message)
        return
      }
      // A block stored again meanwhile took its key out of the set before writing its entry.
      for (const key of batch) if (!this.sizes.has(key)) this.staleIndex.delete(key)
    }
  }

  /** Index deletions not written yet. */
  get pendingIndexDeletions (): number { return this.staleIndex.size }

  /** CIDs of all held blocks. */
  * cids (): Generator<CID> {
    for (const key of this.sizes.keys()) yield CID.parse(key)
  }

  async pin (info: PinInfo): Promise<void> {
    try {
      await this.db.put('p/' + info.cid, new TextEncoder().encode(JSON.stringify(info)), syncIf(true))
    } catch (err) {
      throw diskError(err, `pin ${info.cid}`)
    }
  }

  async unpin (cid: CID): Promise<boolean> {
    const key = 'p/' + cid.toString()
    const had = (await this.db.get(key)) != null
    if (had) await this.db.del(key, syncIf(true))
    return had
  }

  async getPin (cid: CID): Promise<PinInfo | undefined> {
    const value = await this.db.get('p/' + cid.toString())
    return value == null ? undefined : JSON.parse(new TextDecoder().decode(value)) as PinInfo
  }

  async pins (): Promise<PinInfo[]> {
    const out: PinInfo[] = []
    for await (const value of this.db.values({ gte: 'p/', lt: 'p0' })) out.push(JSON.parse(new TextDecoder().decode(value)) as PinInfo)
    return out
  }

  /** Records a download in progress, so its blocks survive garbage collection and a restart. */
  async markDownload (record: DownloadRecord): Promise<void> {
    try {
      await this.db.put('d/' + record.cid, new TextEncoder().encode(JSON.stringify(record)))
    } catch (err) {
      throw diskError(err, `record the download of ${record.cid}`)
    }
  }

  async getDownload (cid: CID): Promise<DownloadRecord | undefined> {
    const key = cid.toString()
    const value = await this.db.get('d/' + key)
    return value == null ? undefined : decodeDownload(key, value)
  }

  async clearDownload (cid: CID): Promise<void> {
    await this.db.del('d/' + cid.toString())
  }

  async downloads (): Promise<DownloadRecord[]> {
    const out: DownloadRecord[] = []
    for await (const [key, value] of this.db.iterator({ gte: 'd/', lt: 'd0' })) out.push(decodeDownload(key.slice(2), value))
    return out
  }

  /** Remembers a root we announce in the DHT, to withdraw it when the root is gone. */
  async markProvided (cid: CID): Promise<void> {
    await this.db.put('r/' + cid.toString(), new Uint8Array(0))
  }

  async unmarkProvided (cid: CID): Promise<void> {
    await this.db.del('r/' + cid.toString())
  }

  async providedRoots (): Promise<CID[]> {
    const out: CID[] = []
    for await (const key of this.db.keys({ gte: 'r/', lt: 'r0' })) out.push(CID.parse(key.slice(2)))
    return out
  }

  /**
   * Removes every block not in `keep`, then the leftovers (see repair). Space is freed before
   * anything is written, so this works on a full disk.
   */
  async sweep (keep: Set<string>): Promise<SweepResult> {
    const victims: CID[] = []
    for (const key of this.sizes.keys()) if (!keep.has(key) && !this.writing.has(key)) victims.push(CID.parse(key))
    const freed = await this.deleteMany(victims)
    const rest = await this.repair()
    return { removed: victims.length, freed: freed + rest.freed, strays: rest.strays, indexPending: rest.indexPending }
  }

  /**
   * Removes what a crash or a failed write left behind: temporary files, block files with no
   * index entry, and index entries whose file is gone. Blocks being written now are left alone.
   */
  async repair (): Promise<SweepResult> {
    const indexed = new Set(this.sizes.keys())
    const seen = new Set<string>()
    let strays = 0
    let freed = 0
    for (const shard of await readdir(this.dir).catch(() => [] as string[])) {
      for (const name of await readdir(join(this.dir, shard)).catch(() => [] as string[])) {
        const key = name.endsWith('.tmp') ? name.slice(0, name.indexOf('.')) : name
        if (!BLOCK_NAME.test(key) || this.writing.has(key)) continue
        if (key === name && indexed.has(key)) { seen.add(key); continue }
        if (key === name && this.sizes.has(key)) continue
        const file = join(this.dir, shard, name)
        const size = await lstat(file).then(s => s.isFile() ? s.size : -1, () => -1)
        if (size < 0) continue
        await rm(file, { force: true })
        strays++
        freed += size
      }
    }
    const missing: CID[] = []
    for (const key of indexed) if (!seen.has(key) && this.sizes.has(key) && !this.writing.has(key)) missing.push(CID.parse(key))
    if (missing.length > 0) log('%d indexed blocks have no file; dropping them', missing.length)
    await this.deleteMany(missing)
    await this.flushIndex()
    if (strays > 0) log('removed %d leftover block files (%d bytes)', strays, freed)
    return { removed: 0, freed, strays, indexPending: this.staleIndex.size }
  }
}

/** A `d/` record; one written before attempts were counted is an empty value. */
function decodeDownload (cid: string, value: Uint8Array): DownloadRecord {
  if (value.length > 0) {
    try {
      const r = JSON.parse(new TextDecoder().decode(value)) as Partial<DownloadRecord>
      return { cid, attempts: Number(r.attempts) || 0, since: Number(r.since) || Date.now(), found: r.found === true }
    } catch {}
  }
  return { cid, attempts: 0, since: Date.now(), found: false }
}

/** LevelDB write options; classic-level honours `sync` through sublevels, whose types omit it. */
function syncIf (sync: boolean): Record<string, unknown> {
  return { sync }
}

function encodeSize (n: number): Uint8Array {
  const out = new Uint8Array(4)
  new DataView(out.buffer).setUint32(0, n)
  return out
}

function decodeSize (bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0)
}
