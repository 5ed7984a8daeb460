/**
 * Blocks, CIDs and pins as the content capability sees them, with no storage behind them: the
 * block size limit, the errors a store gives, CID parsing at the boundary, and the interface of the
 * block store the service and the swarm use (the Node peer's is blockstore.ts, files on disk; a
 * browser peer can bring its own).
 */
import { CID } from 'multiformats/cid'
import { CHUNK_SIZE } from './unixfs.ts'

/** Largest block we store, fetch or serve: one chunk plus room for a dag-pb node of 1024 links. */
export const MAX_BLOCK_BYTES = CHUNK_SIZE + 128 * 1024
/** Garbage collection of unpinned blocks starts when the store passes this share of its limit. */
export const GC_WATERMARK = 0.9

export class BlockNotFoundError extends Error {
  name = 'BlockNotFoundError'
}

export class BlockTooLargeError extends Error {
  name = 'BlockTooLargeError'
}

export class StoreFullError extends Error {
  name = 'StoreFullError'
}

/** The file system under the store has no space left (ENOSPC); nothing half-written is kept. */
export class DiskFullError extends Error {
  name = 'DiskFullError'
  readonly code = 'ENOSPC'
}

/** Whether an error from a file or a LevelDB write means the disk is full. */
export function isNoSpace (err: unknown): boolean {
  for (let e = err as { code?: unknown, message?: unknown, cause?: unknown } | undefined, depth = 0; e != null && depth < 4; e = e.cause as typeof e, depth++) {
    if (e.code === 'ENOSPC' || (e as Error).name === 'DiskFullError') return true
    if (typeof e.message === 'string' && /no space left|ENOSPC/i.test(e.message)) return true
  }
  return false
}

/** DiskFullError for an error that means the disk is full, else the error itself. */
export function diskError (err: unknown, what: string): Error {
  if (err instanceof DiskFullError || !isNoSpace(err)) return err as Error
  return new DiskFullError(`no space left on the disk to ${what}`, { cause: err })
}

export class InvalidCidError extends Error {
  name = 'InvalidCidError'
}

/** Parses a CID string from a user or a peer; InvalidCidError otherwise. */
export function parseCid (value: unknown): CID {
  if (typeof value !== 'string' || value.length === 0 || value.length > 256) throw new InvalidCidError('a CID is a string of 1..256 characters')
  try {
    return CID.parse(value).toV1()
  } catch {
    throw new InvalidCidError(`not a CID: ${value.slice(0, 80)}`)
  }
}

/** Decodes a CID from bytes off the wire; InvalidCidError otherwise. */
export function decodeCid (bytes: Uint8Array): CID {
  try {
    return CID.decode(bytes)
  } catch {
    throw new InvalidCidError('malformed CID bytes')
  }
}

export interface PutOptions {
  /** Skip hashing: the caller has just verified these bytes against the CID. */
  verified?: boolean
  /** fsync the block before returning (our own imports: acknowledged data must survive a crash). */
  durable?: boolean
}

/** A download in progress as the store keeps it (`d/<cid>`). */
export interface DownloadRecord {
  cid: string
  /** Times it was started: by the user, then once on each start of the peer. */
  attempts: number
  /** When it was first asked for (ms since the epoch). */
  since: number
  /** Whether any holder was ever found (its root block is here). */
  found: boolean
}

export interface PinInfo {
  cid: string
  size: number
  name?: string
  pinnedAt: number
}

/** The block store the content service and the swarm use (Blockstore on the Node peer). */
export interface ContentBlockstore {
  readonly maxBytes: number
  readonly usedBytes: number
  readonly blockCount: number
  /** Called when usage passes the watermark; returns once unpinned blocks have been collected. */
  onPressure?: () => Promise<void>
  has: (cid: CID) => boolean
  /** has() by the CID's string form. */
  hasKey: (key: string) => boolean
  sizeOf: (cid: CID) => number | undefined
  /** Stores a block after checking it against its CID (unless `verified`). */
  put: (cid: CID, bytes: Uint8Array, options?: PutOptions) => Promise<void>
  /** A held block, checked against its CID; BlockNotFoundError when absent or damaged. */
  get: (cid: CID) => Promise<Uint8Array>
  pin: (info: PinInfo) => Promise<void>
  unpin: (cid: CID) => Promise<boolean>
  getPin: (cid: CID) => Promise<PinInfo | undefined>
  pins: () => Promise<PinInfo[]>
  /** Downloads in progress, kept from garbage collection across restarts, with how they went. */
  markDownload: (record: DownloadRecord) => Promise<void>
  getDownload: (cid: CID) => Promise<DownloadRecord | undefined>
  clearDownload: (cid: CID) => Promise<void>
  downloads: () => Promise<DownloadRecord[]>
  /** Roots we announce as a provider, to withdraw them when they are gone. */
  markProvided: (cid: CID) => Promise<void>
  unmarkProvided: (cid: CID) => Promise<void>
  providedRoots: () => Promise<CID[]>
  /** Deletes held blocks (files first, then their index entries in small batches); returns bytes freed. */
  deleteMany: (cids: Iterable<CID>) => Promise<number>
  /**
   * Removes every block not in `keep`, then what a crash or a failed write left behind (temporary
   * files, block files with no index entry, index entries with no file). Frees space before it
   * writes anything, so it works on a full disk.
   */
  sweep: (keep: Set<string>) => Promise<SweepResult>
  /** The same clean-up of leftovers alone (on start). */
  repair: () => Promise<SweepResult>
}

export interface SweepResult {
  /** Held blocks removed. */
  removed: number
  /** Bytes freed on disk, leftovers included. */
  freed: number
  /** Leftover files removed (temporary files and block files with no index entry). */
  strays: number
  /** Index entries whose deletion could not be written yet (tried again by the next sweep). */
  indexPending: number
}
