/**
 * Per-test cleanup: what a test opens it hands to `defer`, and it is undone when the test ends,
 * last-in first-out (so a store closes before its directory goes), whether the test passed or not.
 */
import type { TestContext } from 'node:test'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Registers cleanups for test `t`; they run last-in first-out once it ends, their errors ignored. */
export function cleanups (t: TestContext): (fn: () => Promise<unknown>) => void {
  const fns: Array<() => Promise<unknown>> = []
  t.after(async () => {
    for (const fn of fns.reverse()) await fn().catch(() => {})
  })
  return fn => { fns.push(fn) }
}

/** A fresh directory `peerverse-<name>-…` under the OS temp dir, removed by `defer`. */
export async function tempDir (defer: (fn: () => Promise<unknown>) => void, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `peerverse-${name}-`))
  defer(async () => rm(dir, { recursive: true, force: true }))
  return dir
}
