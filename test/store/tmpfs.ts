/**
 * A small real filesystem for tests of a full disk: a tmpfs mounted on a temp dir (needs root; the
 * test skips with a message when the mount fails), unmounted and removed in cleanup, and a filler
 * file that takes the rest of its space.
 */
import type { TestContext } from 'node:test'
import { execFile } from 'node:child_process'
import { open, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { tempDir } from '../helpers/cleanup.ts'

const run = promisify(execFile)

/** Mounts a tmpfs of `mib` MiB (options such as `ro` appended); undefined (and the test skipped) when it cannot. */
export async function mountTmpfs (t: TestContext, defer: (fn: () => Promise<unknown>) => void, mib: number, extra = ''): Promise<string | undefined> {
  const dir = await tempDir(defer, 'tmpfs')
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0700${extra === '' ? '' : ',' + extra}`, 'tmpfs', dir])
  } catch (err) {
    t.skip(`cannot mount a tmpfs (needs root): ${(err as Error).message.split('\n')[0]}`)
    return undefined
  }
  defer(async () => { await run('umount', ['-l', dir]) })
  return dir
}

/** Writes `path` until the filesystem is full (ENOSPC); returns the bytes written. */
export async function fill (path: string): Promise<number> {
  const fh = await open(path, 'w')
  const chunk = new Uint8Array(64 * 1024).fill(1)
  let written = 0
  try {
    for (let size = chunk.length; size >= 512;) {
      try {
        const { bytesWritten } = await fh.write(chunk, 0, size, written)
        written += bytesWritten
        if (bytesWritten < size) size = Math.floor(size / 2)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
        size = Math.floor(size / 2)
      }
    }
  } finally {
    await fh.close()
  }
  return written
}

/** Deletes a filler file. */
export async function unfill (path: string): Promise<void> {
  await rm(path, { force: true })
}

export { join }
