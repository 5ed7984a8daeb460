/**
 * The store's named errors, and how a LevelDB error is read into one. Kept apart from the Node-only
 * store so capabilities (which import no `node:` module) can tell the store's own failures from a
 * peer's bad input: a write we could not persist is never the sender's fault.
 */

/** Why a write failed: the disk is full, or LevelDB reported another I/O or corruption error. */
export type StoreWriteCode = 'ENOSPC' | 'EIO'

/** A write the store could not persist; the store refuses writes until it has reopened cleanly. */
export class StoreWriteError extends Error {
  name = 'StoreWriteError'
  readonly code: StoreWriteCode

  constructor (message: string, options: { code: StoreWriteCode, cause?: unknown }) {
    super(message, { cause: options.cause })
    this.code = options.code
  }
}

/** Why a store could not open. */
export type StoreOpenReason = 'no-space' | 'corruption' | 'permission' | 'locked' | 'unknown'

/** The store cannot open; the message names the cause and what to do about it. */
export class StoreOpenError extends Error {
  name = 'StoreOpenError'
  readonly reason: StoreOpenReason

  constructor (message: string, options: { reason: StoreOpenReason, cause?: unknown }) {
    super(message, { cause: options.cause })
    this.reason = options.reason
  }
}

/** Another process holds the store (a StoreOpenError whose reason is `locked`). */
export class StoreLockedError extends StoreOpenError {
  name = 'StoreLockedError'
}

/** Whether an error is the store's own write failure (not the fault of whoever sent the data). */
export function isStoreWriteError (err: unknown): err is StoreWriteError {
  return (err as Error | undefined)?.name === 'StoreWriteError'
}

/** The messages and codes of an error and its causes, innermost last. */
function chain (err: unknown): { text: string, codes: string[] } {
  const texts: string[] = []
  const codes: string[] = []
  for (let e = err as { message?: string, code?: string, cause?: unknown } | undefined, depth = 0; e != null && depth < 8; e = e.cause as typeof e, depth++) {
    if (typeof e.message === 'string') texts.push(e.message)
    if (typeof e.code === 'string') codes.push(e.code)
  }
  return { text: texts.join(': '), codes }
}

/** Whether an error (or one of its causes) says the device is full. */
export function isNoSpace (err: unknown): boolean {
  const { text, codes } = chain(err)
  return codes.includes('ENOSPC') || /No space left on device|ENOSPC/i.test(text)
}

/** Whether an error is one LevelDB raises when a write could not be persisted (I/O or corruption). */
export function isPersistenceFailure (err: unknown): boolean {
  const { text, codes } = chain(err)
  return codes.includes('LEVEL_IO_ERROR') || codes.includes('LEVEL_CORRUPTION') || isNoSpace(err) || /^(IO error|Corruption)/.test(text)
}

/** The StoreWriteError for a LevelDB write error. */
export function writeErrorOf (err: unknown, location: string): StoreWriteError {
  const detail = chain(err).text
  if (isNoSpace(err)) {
    return new StoreWriteError(`no space left on the device holding ${location}: the write was not saved. Free some space: the store accepts writes again by itself (${detail})`, { code: 'ENOSPC', cause: err })
  }
  return new StoreWriteError(`the store at ${location} could not save a write (${detail})`, { code: 'EIO', cause: err })
}

/** The StoreOpenError that names why LevelDB (or creating its directory) failed to open `location`. */
export function openErrorOf (err: unknown, location: string): StoreOpenError {
  const { text, codes } = chain(err)
  const detail = text === '' ? String(err) : text
  if (codes.includes('LEVEL_LOCKED') || /lock/i.test(detail) && /temporarily unavailable|held by process/i.test(detail)) {
    return new StoreLockedError(`${location} is in use by another peerverse process: stop it, or start this one with another --data dir`, { reason: 'locked', cause: err })
  }
  if (isNoSpace(err)) {
    return new StoreOpenError(`cannot open the store at ${location}: no space left on its device. Free some space there (delete files, or run 'peerverse gc' once a peer is running) or move the data dir to a larger disk, then start again (${detail})`, { reason: 'no-space', cause: err })
  }
  if (codes.includes('EACCES') || codes.includes('EPERM') || codes.includes('EROFS') || /Permission denied|Operation not permitted|Read-only file system/i.test(detail)) {
    return new StoreOpenError(`cannot open the store at ${location}: permission denied or read-only file system. Run as the data dir's owner, check its mode (ls -ld), or remount it writable (${detail})`, { reason: 'permission', cause: err })
  }
  // A MANIFEST or CURRENT that names a file which is gone is a damaged store, not a passing fault.
  if (codes.includes('LEVEL_CORRUPTION') || /Corruption|corrupt/i.test(detail) || /(MANIFEST|CURRENT)[^:]*: No such file/.test(detail)) {
    return new StoreOpenError(`the store at ${location} is corrupt. Restore it from a backup, or move it aside to start with an empty store (the identity and keys beside it are kept) (${detail})`, { reason: 'corruption', cause: err })
  }
  return new StoreOpenError(`cannot open the store at ${location} (${detail})`, { reason: 'unknown', cause: err })
}
