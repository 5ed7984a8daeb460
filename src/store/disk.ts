/**
 * The disk under the data dir: how much is free (fs.statfs), and an emergency ballast, a reserve
 * file (as CockroachDB keeps one) deleted when a write fails for want of space, so that the store
 * can reopen (LevelDB's recovery writes a table) and garbage collection can run, and made again
 * once there is room. Node-only (node:fs).
 */
import { execFile } from 'node:child_process'
import { open, rm, stat, statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** The ballast file's name in the data dir. */
export const BALLAST_FILE = 'store-ballast'
/** Bytes of ballast by default. */
export const DEFAULT_BALLAST_BYTES = 64 * 1024 * 1024
/** The ballast takes at most this share of its filesystem (1 MiB on a 32 MiB one). */
export const BALLAST_MAX_FRACTION = 1 / 32
/** The ballast is made again only once free space is at least this many times its size. */
export const BALLAST_REARM_FACTOR = 2
/** Chunk the ballast is written in. */
const BALLAST_CHUNK = 1024 * 1024

export interface DiskSpace {
  /** Bytes free to this user. */
  free: number
  /** Size of the filesystem. */
  total: number
}

/** Free and total bytes of the filesystem holding `path`. */
export async function diskSpace (path: string): Promise<DiskSpace> {
  const s = await statfs(path)
  return { free: s.bavail * s.bsize, total: s.blocks * s.bsize }
}

/** The reserve file: made when there is room, released when a write finds the disk full. */
export class Ballast {
  readonly path: string
  private readonly wanted: number
  private busy: Promise<unknown> = Promise.resolve()

  constructor (dataDir: string, bytes: number) {
    this.path = join(dataDir, BALLAST_FILE)
    this.wanted = bytes
  }

  /** Bytes the ballast should hold on a filesystem of `total` bytes. */
  sizeFor (total: number): number {
    return Math.max(0, Math.min(this.wanted, Math.floor(total * BALLAST_MAX_FRACTION)))
  }

  /** Bytes the ballast file holds now (0 when absent). */
  async held (): Promise<number> {
    try {
      return (await stat(this.path)).size
    } catch {
      return 0
    }
  }

  /** Makes the ballast if it is missing (or short) and free space is at least BALLAST_REARM_FACTOR times its size; returns its bytes. */
  async ensure (): Promise<number> {
    return await this.serial(async () => {
      const { free, total } = await diskSpace(join(this.path, '..'))
      const size = this.sizeFor(total)
      const held = await this.held()
      if (size === 0 || held >= size) return held
      if (free < (size - held) * BALLAST_REARM_FACTOR) return held
      // fallocate reserves the blocks at once where the system has it (Linux); else zeros are written.
      try {
        await run('fallocate', ['-l', String(size), this.path])
        if (await this.held() >= size) return size
      } catch {}
      const fh = await open(this.path, 'w', 0o600)
      try {
        const zeros = new Uint8Array(Math.min(BALLAST_CHUNK, size))
        for (let at = 0; at < size; at += zeros.length) await fh.write(zeros, 0, Math.min(zeros.length, size - at), at)
        await fh.sync()
      } catch (err) {
        await fh.close().catch(() => {})
        await rm(this.path, { force: true })
        throw err
      }
      await fh.close()
      return size
    })
  }

  /** Deletes the ballast; returns the bytes it freed. */
  async release (): Promise<number> {
    return await this.serial(async () => {
      const held = await this.held()
      await rm(this.path, { force: true })
      return held
    })
  }

  private async serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.busy.then(fn, fn)
    this.busy = run.catch(() => {})
    return await run
  }
}
