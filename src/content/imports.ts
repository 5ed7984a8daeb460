/**
 * Imports in progress: the blocks each add holds (kept from garbage collection until its root is
 * pinned) and those it wrote new, so a failed import removes what it wrote and nothing else. An
 * import with an id (a directory added file by file over several requests) stays open until it is
 * ended or idle for IMPORT_IDLE_MS.
 */
import { logger } from '@libp2p/logger'
import { CID } from 'multiformats/cid'
import type { ContentBlockstore } from './blocks.ts'

/** Imports (a directory added file by file) open at once. */
export const MAX_OPEN_IMPORTS = 64
/** An import not touched for this long is closed; its blocks become ordinary unpinned blocks. */
export const IMPORT_IDLE_MS = 10 * 60_000

const log = logger('peerverse:content')

/** An import id is missing, malformed, unknown, or one too many. */
export class InvalidImportError extends Error {
  name = 'InvalidImportError'
}

/** Blocks of one import: all it added (kept from gc while open) and those it wrote new (removed if it is discarded). */
interface ImportGroup {
  blocks: Set<string>
  wrote: Set<string>
  touched: number
}

/** Stores one block of an import. */
export type PutImported = (cid: CID, bytes: Uint8Array) => Promise<void>

export class Imports {
  private readonly blockstore: ContentBlockstore
  /** The blocks reachable from pins and downloads, marked from a set of blocks to keep. */
  private readonly reachableFrom: (keep: Set<string>) => Promise<Set<string>>
  /** Blocks of adds in progress, with how many adds hold each. */
  private readonly holding = new Map<string, number>()
  /** Open imports by id. */
  private readonly groups = new Map<string, ImportGroup>()

  constructor (blockstore: ContentBlockstore, reachableFrom: (keep: Set<string>) => Promise<Set<string>>) {
    this.blockstore = blockstore
    this.reachableFrom = reachableFrom
  }

  /** Blocks held by adds in progress and open imports (but `except`). */
  held (except?: ImportGroup): Set<string> {
    const keep = new Set<string>(this.holding.keys())
    for (const g of this.groups.values()) if (g !== except) for (const key of g.blocks) keep.add(key)
    return keep
  }

  /**
   * Runs one import: `build` stores its blocks through `put` (and pins its root). When it fails,
   * the blocks it wrote that nothing else references are removed again.
   */
  async run<R> (importId: string | undefined, build: (put: PutImported) => Promise<R>): Promise<R> {
    const group = this.group(importId)
    const held: string[] = []
    const wrote: string[] = []
    const put: PutImported = async (cid, bytes) => {
      const key = cid.toString()
      this.holding.set(key, (this.holding.get(key) ?? 0) + 1)
      held.push(key)
      group?.blocks.add(key)
      const had = this.blockstore.has(cid)
      await this.blockstore.put(cid, bytes, { verified: true, durable: true })
      if (!had) { wrote.push(key); group?.wrote.add(key) }
    }
    try {
      return await build(put)
    } catch (err) {
      this.release(held)
      held.length = 0
      await this.discard(wrote, group)
      throw err
    } finally {
      this.release(held)
    }
  }

  /**
   * Ends an import: kept (its root is pinned or referenced by now), or discarded (the user's add
   * failed part way), which removes the blocks it wrote that nothing else references.
   */
  async end (id: string, options: { discard?: boolean } = {}): Promise<{ removed: number }> {
    const group = this.groups.get(id)
    if (group == null) return { removed: 0 }
    this.groups.delete(id)
    if (options.discard !== true) return { removed: 0 }
    const before = this.blockstore.blockCount
    await this.discard(group.wrote)
    return { removed: before - this.blockstore.blockCount }
  }

  private release (held: string[]): void {
    for (const key of held) {
      const n = (this.holding.get(key) ?? 1) - 1
      if (n <= 0) this.holding.delete(key)
      else this.holding.set(key, n)
    }
  }

  /**
   * Removes blocks a failed import wrote, except those something else now references (a pin, a
   * download, another import). Space is freed before anything is written.
   */
  private async discard (keys: Iterable<string>, group?: ImportGroup): Promise<void> {
    const mine = [...keys]
    if (mine.length === 0) return
    const keep = await this.reachableFrom(this.held(group))
    const victims = mine.filter(k => !keep.has(k)).map(k => CID.parse(k))
    await this.blockstore.deleteMany(victims).catch(err => { log('removing %d blocks of a failed import: %s', victims.length, (err as Error).message) })
  }

  /** The open import of `id`, created on first use; InvalidImportError for a bad id or too many. */
  private group (id: string | undefined): ImportGroup | undefined {
    if (id == null) return undefined
    if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{8,64}$/.test(id)) throw new InvalidImportError('an import id is 8..64 letters, digits, _ or -')
    const now = Date.now()
    for (const [k, g] of this.groups) if (now - g.touched > IMPORT_IDLE_MS) this.groups.delete(k)
    let group = this.groups.get(id)
    if (group == null) {
      if (this.groups.size >= MAX_OPEN_IMPORTS) throw new InvalidImportError(`more than ${MAX_OPEN_IMPORTS} imports open`)
      group = { blocks: new Set(), wrote: new Set(), touched: now }
      this.groups.set(id, group)
    }
    group.touched = now
    return group
  }
}
