/**
 * The `d/<cid>` records of downloads no one wants any more (aborted, or ended because the store
 * could not keep their blocks). Such a record must go, or the download resumes on the next start
 * and its blocks stay roots for garbage collection. On a full disk the store may refuse the
 * deletion: it is then remembered here, left out of gc's roots at once, and written as soon as the
 * store accepts writes again (or at the latest when the service stops).
 */
import { logger } from '@libp2p/logger'
import { isStoreWriteError } from '../store/errors.ts'
import { isNoSpace, parseCid, type ContentBlockstore } from './blocks.ts'

const log = logger('peerverse:content')

/** What content needs to know of the node's store: whether it takes writes, and when that changes. */
export interface StoreState {
  readonly writable: boolean
  onChange: (listener: (change: { type: string, writable?: boolean }) => void) => () => void
}

/** Whether a failure is our store's (full disk, refused write, size limit), not the swarm's: fetching again cannot help. */
export function isStoreFailure (err: unknown): boolean {
  const name = (err as Error | undefined)?.name
  return name === 'DiskFullError' || name === 'StoreFullError' || isStoreWriteError(err) || isNoSpace(err)
}

export class UnwantedDownloads {
  private readonly blockstore: ContentBlockstore
  private readonly store?: StoreState
  /** Roots whose record is to be deleted. */
  private readonly keys = new Set<string>()
  private unsubscribe?: () => void
  private flushing?: Promise<void>

  constructor (blockstore: ContentBlockstore, store?: StoreState) {
    this.blockstore = blockstore
    this.store = store
  }

  start (): void {
    if (this.unsubscribe != null || this.store == null) return
    this.unsubscribe = this.store.onChange(change => {
      if (change.type === 'writable' && change.writable === true) void this.flush()
    })
  }

  /** Stops listening, after one last try at the deletions still pending. */
  async stop (): Promise<void> {
    this.unsubscribe?.()
    this.unsubscribe = undefined
    await this.flush()
  }

  /** Whether a root's record is on its way out (not a root for gc, not to be resumed). */
  has (key: string): boolean {
    return this.keys.has(key)
  }

  /** Deletions not written yet. */
  get pending (): number { return this.keys.size }

  /** The root is wanted again (a new fetch is about to record it); returns whether it was on its way out. */
  keep (key: string): boolean {
    return this.keys.delete(key)
  }

  /** Deletes a root's record now, or as soon as the store takes writes. */
  async forget (key: string): Promise<void> {
    this.keys.add(key)
    await this.flush()
  }

  /** Writes the pending deletions; stops at the first the store refuses (tried again when it takes writes). */
  async flush (): Promise<void> {
    if (this.flushing != null) return await this.flushing
    this.flushing = (async () => {
      for (const key of [...this.keys]) {
        if (this.store?.writable === false) return
        if (!this.keys.has(key)) continue
        try {
          await this.blockstore.clearDownload(parseCid(key))
          this.keys.delete(key)
        } catch (err) {
          log('the record of the download of %s is deleted once the store takes writes: %s', key, (err as Error).message)
          return
        }
      }
    })().finally(() => { this.flushing = undefined })
    await this.flushing
  }
}
