/**
 * Persistence: one LevelDB per data dir, opened once per node, a sublevel per service.
 * Services receive only their sublevel, never the whole database. Node-only: LevelDB on disk
 * (a browser peer opens IndexedDB through browser-level instead).
 *
 * A write that fails must not cost the writes acknowledged after it. LevelDB turns a failed
 * *sync* into a sticky error, but when appending a log record fails (ENOSPC half-way through a
 * record) it returns the error and goes on appending later records after the torn fragment: its
 * log writer's block offset no longer matches the file, and on recovery the reader drops the rest
 * of that 32 KiB block, acknowledged records included. So writes through the root database go to
 * LevelDB one batch at a time (none is in flight when one fails; writes that queued meanwhile go
 * together as the next batch, as LevelDB's own group commit does). After any failed write the
 * store refuses writes at once (StoreWriteError) and repairs LevelDB, retrying every
 * STORE_REOPEN_RETRY_MS: when the log append failed, a forced memtable flush writes what the log
 * held to a table and starts a fresh log (readers and iterators carry on); otherwise (a sticky
 * error) it closes and reopens LevelDB, whose recovery does the same. Then it accepts writes again
 * with no restart. A ballast file gives the repair room on a full disk (disk.ts), and a periodic
 * check of free space warns below LOW_DISK_BYTES.
 */
import { logger } from '@libp2p/logger'
import { ClassicLevel } from 'classic-level'
import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Ballast, DEFAULT_BALLAST_BYTES, diskSpace } from './disk.ts'
import { isNoSpace, isPersistenceFailure, openErrorOf, StoreWriteError, writeErrorOf } from './errors.ts'

export { StoreLockedError, StoreOpenError, StoreWriteError, type StoreOpenReason, type StoreWriteCode } from './errors.ts'
export { BALLAST_FILE, BALLAST_MAX_FRACTION, BALLAST_REARM_FACTOR, DEFAULT_BALLAST_BYTES } from './disk.ts'

const log = logger('peerverse:store')

export type BytesSublevel = ReturnType<typeof makeSublevel>

function makeSublevel (db: ClassicLevel<string, Uint8Array>, name: string) {
  return db.sublevel<string, Uint8Array>(name, { keyEncoding: 'utf8', valueEncoding: 'view' })
}

export const STORE_DIR = 'store'
/** How often a store that refuses writes tries to reopen. */
export const STORE_REOPEN_RETRY_MS = 2_000
/** Below this many free bytes on the data dir's disk the peer warns. */
export const LOW_DISK_BYTES = 1024 * 1024 * 1024
/** How often free space is checked. */
export const DISK_CHECK_INTERVAL_MS = 15_000
/** Writes queued while one is in flight go to LevelDB together as one batch of at most this many key and value bytes (as LevelDB's own group commit does). */
export const WRITE_GROUP_MAX_BYTES = 1024 * 1024
/** Free bytes beyond the memtable's size a repair waits for after ENOSPC (LevelDB writes the memtable out as a table). */
export const REOPEN_MARGIN_BYTES = 256 * 1024
/** How long a reopen waits for open iterators (readers) to finish before it closes them. */
export const REOPEN_ITERATOR_WAIT_MS = 10_000

export interface StoreInit {
  /** Warn below this many free bytes (default LOW_DISK_BYTES). */
  lowDiskBytes?: number
  /** Bytes of emergency ballast (default DEFAULT_BALLAST_BYTES, at most BALLAST_MAX_FRACTION of the disk). */
  ballastBytes?: number
  /** How often a failed store tries to reopen (default STORE_REOPEN_RETRY_MS). */
  reopenRetryMs?: number
  /** How often free space is checked once the monitor runs (default DISK_CHECK_INTERVAL_MS). */
  diskCheckIntervalMs?: number
}

export interface DiskStatus {
  free: number
  total: number
  /** Free space is below `lowDiskBytes`. */
  low: boolean
  lowDiskBytes: number
}

export interface StoreStatus {
  writable: boolean
  /** The write failure that made the store refuse writes (the last one, kept once recovered). */
  lastError?: { code: string, message: string }
  /** Free space as last checked. */
  disk?: DiskStatus
  /** Bytes of ballast held now. */
  ballastBytes: number
}

/** What the store tells its listeners: it stopped or resumed accepting writes, or free space crossed the warning line. */
export type StoreChange =
  | { type: 'writable', writable: boolean, error?: StoreWriteError }
  | { type: 'disk', disk: DiskStatus }

type AnyFn = (...args: unknown[]) => Promise<unknown>

/** A write as LevelDB's batch takes it (keys and values already encoded). */
interface WriteOp { type: 'put' | 'del', key: unknown, value?: unknown }

/** How the root's writes reach the store's queue. */
interface WriteQueue {
  /** Operations to apply atomically, queued behind the writes before them. */
  ops: (ops: WriteOp[], sync: boolean) => Promise<unknown>
  /** A write that runs on its own (a range clear, a native chained batch). */
  alone: (run: () => Promise<unknown>) => Promise<unknown>
}

/** LevelDB whose writes all go through the store's queue (sublevels reach the root's private methods). */
class GuardedLevel extends ClassicLevel<string, Uint8Array> {
  queue?: WriteQueue
  iterators?: OpenIterators
}

/** The root's open iterators (every sublevel's iterators are the root's), so a reopen can wait for them. */
class OpenIterators {
  private readonly open = new Set<object>()
  private idle?: { promise: Promise<void>, resolve: () => void }

  track (iterator: { _close: () => Promise<void> }): void {
    this.open.add(iterator)
    const close = iterator._close.bind(iterator)
    iterator._close = async () => {
      try {
        await close()
      } finally {
        this.open.delete(iterator)
        if (this.open.size === 0) this.idle?.resolve()
      }
    }
  }

  /** Resolves once no iterator is open, or after `ms`. */
  async settled (ms: number): Promise<void> {
    if (this.open.size === 0) return
    if (this.idle == null) {
      let resolve = (): void => {}
      const promise = new Promise<void>(r => { resolve = r })
      this.idle = { promise, resolve }
      void promise.then(() => { this.idle = undefined })
    }
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([this.idle.promise, new Promise<void>(r => { timer = setTimeout(r, ms) })])
    clearTimeout(timer)
  }
}
const base = ClassicLevel.prototype as unknown as Record<string, AnyFn>
const guarded = GuardedLevel.prototype as unknown as Record<string, (this: GuardedLevel, ...args: never[]) => unknown>
const syncOf = (options: unknown): boolean => (options as { sync?: boolean } | undefined)?.sync === true
guarded._put = function (this: GuardedLevel, key: unknown, value: unknown, options: unknown) {
  return this.queue == null ? base._put.call(this, key, value, options) : this.queue.ops([{ type: 'put', key, value }], syncOf(options))
}
guarded._del = function (this: GuardedLevel, key: unknown, options: unknown) {
  return this.queue == null ? base._del.call(this, key, options) : this.queue.ops([{ type: 'del', key }], syncOf(options))
}
guarded._batch = function (this: GuardedLevel, ops: unknown, options: unknown) {
  return this.queue == null ? base._batch.call(this, ops, options) : this.queue.ops(ops as WriteOp[], syncOf(options))
}
guarded._clear = function (this: GuardedLevel, ...args: unknown[]) {
  return this.queue == null ? base._clear.apply(this, args) : this.queue.alone(async () => base._clear.apply(this, args))
}
guarded._iterator = function (this: GuardedLevel, options: unknown) {
  const iterator = base._iterator.call(this, options) as unknown as { _close: () => Promise<void> }
  this.iterators?.track(iterator)
  return iterator
}
guarded._chainedBatch = function (this: GuardedLevel) {
  const batch = (base._chainedBatch as unknown as () => { _write: AnyFn }).call(this)
  const write = batch._write.bind(batch)
  batch._write = async (...args: unknown[]) => this.queue == null ? await write(...args) : await this.queue.alone(async () => write(...args))
  return batch
}

/** A write waiting in the queue. */
interface Pending {
  ops?: WriteOp[]
  sync: boolean
  run?: () => Promise<unknown>
  bytes: number
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
}

function sizeOf (v: unknown): number {
  return typeof v === 'string' ? v.length : (v as Uint8Array | undefined)?.byteLength ?? 0
}

export class Store {
  readonly db: ClassicLevel<string, Uint8Array>
  readonly location: string
  readonly dataDir: string
  private readonly ballast: Ballast
  private readonly names = new Set<string>()
  private readonly sublevels: BytesSublevel[] = []
  private readonly listeners = new Set<(change: StoreChange) => void>()
  private readonly lowDiskBytes: number
  private readonly reopenRetryMs: number
  private readonly diskCheckIntervalMs: number
  private writableNow = true
  private failure?: StoreWriteError
  private disk?: DiskStatus
  private ballastHeld = 0
  /** Writes waiting for the one in flight. */
  private readonly queue: Pending[] = []
  /** The loop that hands the queue to LevelDB, while it runs. */
  private flushing?: Promise<void>
  private recovering?: Promise<void>
  private retryTimer?: ReturnType<typeof setTimeout>
  private diskTimer?: ReturnType<typeof setInterval>
  private closed = false

  private constructor (db: GuardedLevel, dataDir: string, ballast: Ballast, init: StoreInit) {
    this.db = db
    this.dataDir = dataDir
    this.location = db.location
    this.ballast = ballast
    this.lowDiskBytes = init.lowDiskBytes ?? LOW_DISK_BYTES
    this.reopenRetryMs = init.reopenRetryMs ?? STORE_REOPEN_RETRY_MS
    this.diskCheckIntervalMs = init.diskCheckIntervalMs ?? DISK_CHECK_INTERVAL_MS
    db.iterators = new OpenIterators()
    db.queue = {
      ops: (ops, sync) => this.submit({ ops, sync, bytes: ops.length === 1 ? sizeOf(ops[0].key) + sizeOf(ops[0].value) : ops.reduce((n, op) => n + sizeOf(op.key) + sizeOf(op.value), 0) }),
      alone: run => this.submit({ run, sync: false, bytes: 0 })
    }
  }

  /**
   * Opens (creating if needed) the store in `dataDir/store`. StoreOpenError naming the cause when it
   * cannot (StoreLockedError when another process holds it); on a full disk the ballast is released
   * and the open tried once more.
   */
  static async open (dataDir: string, init: StoreInit = {}): Promise<Store> {
    const location = join(dataDir, STORE_DIR)
    const ballast = new Ballast(dataDir, init.ballastBytes ?? DEFAULT_BALLAST_BYTES)
    let db: GuardedLevel
    try {
      db = await openLevel(location)
    } catch (err) {
      if (!isNoSpace(err) || await ballast.release().catch(() => 0) === 0) throw openErrorOf(err, location)
      log('no space to open %s: released the ballast, trying again', location)
      try {
        db = await openLevel(location)
      } catch (again) {
        throw openErrorOf(again, location)
      }
    }
    const store = new Store(db, dataDir, ballast, init)
    store.ballastHeld = await ballast.ensure().catch(err => { log('no ballast made: %s', (err as Error).message); return 0 })
    return store
  }

  /** The sublevel of one service; each name may be taken once, so services never share keys. It keeps working across the store's reopens. */
  sublevel (name: string): BytesSublevel {
    if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new Error(`invalid sublevel name ${name}`)
    if (this.names.has(name)) throw new Error(`sublevel ${name} is already taken`)
    this.names.add(name)
    const sub = makeSublevel(this.db, name)
    // While the store refuses writes (and while it reopens, when the sublevel is briefly closed)
    // a write fails with StoreWriteError rather than LevelDB's "not open".
    const writes = sub as unknown as Record<string, AnyFn>
    for (const method of ['put', 'del', 'batch', 'clear']) {
      const original = writes[method].bind(sub)
      writes[method] = (...args: unknown[]) => {
        if (method === 'batch' && args.length === 0) return original()
        if (!this.writableNow) return Promise.reject(this.refusal())
        return original(...args)
      }
    }
    this.sublevels.push(sub)
    return sub
  }

  /** Whether writes are accepted now. */
  get writable (): boolean { return this.writableNow }

  /** The write failure that made the store refuse writes (kept after it recovered, for status). */
  get lastError (): StoreWriteError | undefined { return this.failure }

  status (): StoreStatus {
    return {
      writable: this.writableNow,
      lastError: this.failure == null ? undefined : { code: this.failure.code, message: this.failure.message },
      disk: this.disk,
      ballastBytes: this.ballastHeld
    }
  }

  /** Calls `listener` on every change of writability or of the low-disk state; returns the unsubscribe. */
  onChange (listener: (change: StoreChange) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /** Checks free space now every `diskCheckIntervalMs` (the first check reports a disk already low). */
  startMonitor (): void {
    if (this.diskTimer != null || this.closed) return
    void this.checkDisk()
    this.diskTimer = setInterval(() => { void this.checkDisk() }, this.diskCheckIntervalMs)
    this.diskTimer.unref?.()
  }

  /** Reads free space, tells listeners when it crosses `lowDiskBytes`, and makes the ballast again once there is room. */
  async checkDisk (): Promise<DiskStatus | undefined> {
    let space
    try {
      space = await diskSpace(this.dataDir)
    } catch (err) {
      log('cannot read free space of %s: %s', this.dataDir, (err as Error).message)
      return this.disk
    }
    const was = this.disk?.low
    const disk = { ...space, low: space.free < this.lowDiskBytes, lowDiskBytes: this.lowDiskBytes }
    this.disk = disk
    if (disk.low !== was && (was != null || disk.low)) {
      log(disk.low ? 'low disk: %d bytes free at %s (warning below %d)' : 'disk space back: %d bytes free at %s (warning below %d)', disk.free, this.dataDir, this.lowDiskBytes)
      this.emit({ type: 'disk', disk })
    }
    if (this.writableNow && !this.closed) {
      this.ballastHeld = await this.ballast.ensure().catch(() => this.ballastHeld)
    }
    return disk
  }

  /** Deletes the ballast now (garbage collection on a full disk may need the room); returns the bytes freed. It is made again once there is room. */
  async releaseBallast (): Promise<number> {
    const freed = await this.ballast.release()
    this.ballastHeld = 0
    return freed
  }

  /** Stops retrying, waits for the write in flight and closes LevelDB; safe to call twice, and on a failed store. */
  async close (): Promise<void> {
    this.closed = true
    clearTimeout(this.retryTimer)
    clearInterval(this.diskTimer)
    this.diskTimer = undefined
    await this.recovering
    await this.flushing
    if (this.db.status === 'open' || this.db.status === 'opening') await this.db.close()
  }

  /**
   * Queues a write. One batch is in flight at a time, so none is when one fails; the writes that
   * queued behind it go together as the next batch (one log record, one sync), which keeps LevelDB's
   * group commit. A failed batch fails every write in it, and none of them was applied.
   */
  private submit (write: Omit<Pending, 'resolve' | 'reject'>): Promise<unknown> {
    if (!this.writableNow) return Promise.reject(this.refusal())
    return new Promise((resolve, reject) => {
      this.queue.push({ ...write, resolve, reject })
      if (this.flushing == null) this.flushing = this.flush()
    })
  }

  private async flush (): Promise<void> {
    try {
      while (this.queue.length > 0) await this.flushGroup()
    } finally {
      // Runs in the same tick as the empty check above: a write queued later starts a new loop.
      this.flushing = undefined
    }
  }

  /** Hands the next group of queued writes to LevelDB and settles each. */
  private async flushGroup (): Promise<void> {
    const group: Pending[] = [this.queue.shift()!]
    if (group[0].run == null) {
      let bytes = group[0].bytes
      while (this.queue.length > 0 && this.queue[0].run == null && bytes + this.queue[0].bytes <= WRITE_GROUP_MAX_BYTES) {
        bytes += this.queue[0].bytes
        group.push(this.queue.shift()!)
      }
    }
    if (!this.writableNow) {
      const refusal = this.refusal()
      for (const w of group) w.reject(refusal)
      return
    }
    try {
      const first = group[0]
      const options = { sync: group.some(w => w.sync) }
      const single = group.length === 1 && first.ops?.length === 1 ? first.ops[0] : undefined
      const result = first.run != null
        ? await first.run()
        : single != null
          ? await (single.type === 'put' ? base._put.call(this.db, single.key, single.value, options) : base._del.call(this.db, single.key, options))
          : await base._batch.call(this.db, group.length === 1 ? first.ops : group.flatMap(w => w.ops!), options)
      for (const w of group) w.resolve(result)
    } catch (err) {
      const error = this.failed(err)
      for (const w of group) w.reject(error)
    }
  }

  private refusal (): StoreWriteError {
    const failure = this.failure
    return new StoreWriteError(`the store is not accepting writes: ${failure?.message ?? 'it is reopening'}`, { code: failure?.code ?? 'EIO', cause: failure?.cause })
  }

  /** Reads a failed write: LevelDB's own failures stop writes and start the reopen; others pass through. */
  private failed (err: unknown): unknown {
    if (!isPersistenceFailure(err)) return err
    const error = writeErrorOf(err, this.location)
    this.failure = error
    log.error('write failed, refusing writes until the store reopens: %s', error.message)
    this.setWritable(false, error)
    this.startRecovery()
    return error
  }

  private setWritable (writable: boolean, error?: StoreWriteError): void {
    if (this.writableNow === writable) return
    this.writableNow = writable
    this.emit({ type: 'writable', writable, error })
  }

  private emit (change: StoreChange): void {
    for (const listener of [...this.listeners]) {
      try { listener(change) } catch (err) { log.error('store listener failed: %s', (err as Error).message) }
    }
  }

  private startRecovery (): void {
    if (this.recovering != null || this.closed) return
    this.recovering = this.recover().finally(() => { this.recovering = undefined })
  }

  /** One attempt to repair the store; on failure the next is scheduled. */
  private async recover (): Promise<void> {
    clearTimeout(this.retryTimer)
    const noSpace = this.failure?.code === 'ENOSPC'
    if (noSpace && this.ballastHeld > 0) {
      const freed = await this.ballast.release().catch(() => 0)
      this.ballastHeld = 0
      log('released %d bytes of ballast', freed)
    }
    void this.checkDisk()
    let how: string
    try {
      // A table written on a full disk would fail and leave LevelDB with a sticky error: wait for room.
      if (noSpace && !await this.roomToFlush()) throw new Error('not enough free space yet')
      if (await this.rollLog()) {
        how = 'a fresh log'
      } else {
        await this.reopen()
        how = 'a reopen'
      }
    } catch (err) {
      log('store not repaired yet (%s); trying again in %d ms', (err as Error).message, this.reopenRetryMs)
      if (!this.closed) {
        this.retryTimer = setTimeout(() => { this.startRecovery() }, this.reopenRetryMs)
        this.retryTimer.unref?.()
      }
      return
    }
    if (this.closed) return
    log('store repaired by %s; accepting writes again', how)
    this.setWritable(true)
  }

  /**
   * When appending to the log failed, makes LevelDB start a fresh log without closing: a forced
   * memtable flush (compactRange over an empty range) writes what the torn log held to a table,
   * switches to a new log and deletes the old one. Readers and iterators carry on meanwhile.
   * Returns whether the torn log is gone; if not (LevelDB kept a sticky error), the store reopens.
   */
  private async rollLog (): Promise<boolean> {
    const torn = /(\d+\.log): /.exec(String((this.failure?.cause as Error | undefined)?.message))?.[1]
    if (torn == null || this.db.status !== 'open') return false
    await this.flushing
    await this.db.compactRange('\x00', '\x00').catch(() => {})
    return !await exists(join(this.location, torn))
  }

  /** Whether free space would hold the memtable LevelDB writes out as a table (while open, reads keep working until then). */
  private async roomToFlush (): Promise<boolean> {
    if (this.db.status !== 'open') return true
    let memtable = 0
    try { memtable = Number(this.db.getProperty('leveldb.approximate-memory-usage')) } catch {}
    const { free } = await diskSpace(this.dataDir)
    return free >= memtable + REOPEN_MARGIN_BYTES
  }

  /** Closes and reopens LevelDB, then the sublevels handed out (the root's close closed them). */
  private async reopen (): Promise<void> {
    await this.flushing
    if (this.closed) return
    // Closing ends open iterators: give the readers holding them a while to finish first.
    await (this.db as GuardedLevel).iterators?.settled(REOPEN_ITERATOR_WAIT_MS)
    if (this.closed) return
    if (this.db.status === 'open') await this.db.close()
    if (this.closed) return
    await this.db.open()
    for (const sub of this.sublevels) if (sub.status !== 'open') await sub.open()
  }
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

async function openLevel (location: string): Promise<GuardedLevel> {
  await mkdir(location, { recursive: true }).catch(async err => {
    // A recursive mkdir reports ENOENT for a parent it cannot create (a read-only or full disk): the plain one says why.
    if ((err as { code?: string }).code !== 'ENOENT') throw err
    await mkdir(location)
  })
  const db = new GuardedLevel(location, { keyEncoding: 'utf8', valueEncoding: 'view' })
  await db.open()
  return db
}
