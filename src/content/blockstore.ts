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
 * The `content` sublevel holds: `b/<cid>` the block index (size), `p/<cid>` pins, `d/<cid>`
 * downloads in progress (kept from garbage collection across restarts), `r/<cid>` roots we
 * announce as a provider.
 */
import { mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { CID } from 'multiformats/cid'
import type { BytesSublevel } from '../store/store.ts'
import {
  BlockNotFoundError, BlockTooLargeError, decodeCid, GC_WATERMARK, InvalidCidError, MAX_BLOCK_BYTES, parseCid, StoreFullError,
  type ContentBlockstore, type PinInfo, type PutOptions
} from './blocks.ts'
import { verifyBlock } from './reader.ts'

export const BLOCKS_DIR = 'blocks'

export {
  BlockNotFoundError, BlockTooLargeError, decodeCid, GC_WATERMARK, InvalidCidError, MAX_BLOCK_BYTES, parseCid, StoreFullError,
  type PinInfo, type PutOptions
}

export class Blockstore implements ContentBlockstore {
  private readonly db: BytesSublevel
  private readonly dir: string
  readonly maxBytes: number
  private used = 0
  private count = 0
  /** Called when usage passes the watermark; returns once unpinned blocks have been collected. */
  onPressure?: () => Promise<void>
  private readonly sizes = new Map<string, number>()

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

  /** Stores a block after checking it against its CID. Storing a held block is a no-op. */
  async put (cid: CID, bytes: Uint8Array, options: PutOptions = {}): Promise<void> {
    if (bytes.length > MAX_BLOCK_BYTES) throw new BlockTooLargeError(`block of ${bytes.length} bytes is over ${MAX_BLOCK_BYTES}`)
    if (options.verified !== true) await verifyBlock(cid, bytes)
    const key = cid.toString()
    if (this.sizes.has(key)) return
    if (this.used + bytes.length > this.maxBytes * GC_WATERMARK && this.onPressure != null) await this.onPressure()
    if (this.used + bytes.length > this.maxBytes) throw new StoreFullError(`store holds ${this.used} bytes; limit ${this.maxBytes}`)
    const path = this.path(key)
    await mkdir(join(this.dir, key.slice(-2)), { recursive: true })
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`
    const handle = await open(tmp, 'w')
    try {
      await handle.writeFile(bytes)
      if (options.durable === true) await handle.sync()
    } finally {
      await handle.close()
    }
    await rename(tmp, path)
    if (this.sizes.has(key)) return
    await this.db.put('b/' + key, encodeSize(bytes.length), syncIf(options.durable === true))
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
    const key = cid.toString()
    const size = this.sizes.get(key)
    if (size == null) return
    this.sizes.delete(key)
    this.used -= size
    this.count--
    await this.db.del('b/' + key)
    await unlink(this.path(key)).catch(() => {})
  }

  /** CIDs of all held blocks. */
  * cids (): Generator<CID> {
    for (const key of this.sizes.keys()) yield CID.parse(key)
  }

  async pin (info: PinInfo): Promise<void> {
    await this.db.put('p/' + info.cid, new TextEncoder().encode(JSON.stringify(info)), syncIf(true))
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
  async markDownload (cid: CID): Promise<void> {
    await this.db.put('d/' + cid.toString(), new Uint8Array(0))
  }

  async clearDownload (cid: CID): Promise<void> {
    await this.db.del('d/' + cid.toString())
  }

  async downloads (): Promise<CID[]> {
    const out: CID[] = []
    for await (const key of this.db.keys({ gte: 'd/', lt: 'd0' })) out.push(CID.parse(key.slice(2)))
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

  /** Removes every block not in `keep`; returns blocks and bytes freed. */
  async sweep (keep: Set<string>): Promise<{ removed: number, freed: number }> {
    let removed = 0
    let freed = 0
    for (const [key, size] of [...this.sizes]) {
      if (keep.has(key)) continue
      await this.delete(CID.parse(key))
      removed++
      freed += size
    }
    return { removed, freed }
  }

  /** Deletes leftover temporary files from a crash mid-write. */
  async cleanTemporary (): Promise<void> {
    for (const shard of await readdir(this.dir)) {
      for (const name of await readdir(join(this.dir, shard)).catch(() => [] as string[])) {
        if (name.endsWith('.tmp')) await rm(join(this.dir, shard, name), { force: true })
      }
    }
  }
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
