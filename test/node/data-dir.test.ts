/**
 * The data dir is owner-only whoever made it: a real `peerverse init` and `start` on a dir made
 * 0755 beforehand (with files 0644 already in it) leave every directory 0700 and every file 0600,
 * LevelDB's included; links are not followed out of the dir; the walk is bounded.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { chmod, lstat, mkdir, readdir, stat, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { MAX_DATA_DIR_WALK_ENTRIES, ownerOnlyDataDir } from '../../src/node/config.ts'
import { PeerSet, runCli } from '../helpers/cli-peer.ts'

const set = new PeerSet()
after(async () => { await set.cleanup() })

/** Every path under `dir` (links not followed) with its permission bits. */
async function modes (dir: string): Promise<Array<{ path: string, mode: number, kind: 'dir' | 'file' | 'link' }>> {
  const out: Array<{ path: string, mode: number, kind: 'dir' | 'file' | 'link' }> = []
  const walk = async (d: string): Promise<void> => {
    for (const name of await readdir(d)) {
      const p = join(d, name)
      const st = await lstat(p)
      const kind = st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'file'
      out.push({ path: p, mode: st.mode & 0o777, kind })
      if (kind === 'dir') await walk(p)
    }
  }
  await walk(dir)
  return out
}

function assertOwnerOnly (all: Array<{ path: string, mode: number, kind: string }>): void {
  for (const e of all) {
    if (e.kind === 'link') continue
    assert.equal(e.mode, e.kind === 'dir' ? 0o700 : 0o600, `${e.path} is ${e.mode.toString(8)}`)
  }
}

describe('the data dir is owner-only', () => {
  it('init and start on a dir made 0755 with 0644 files in it: dirs 0700, files 0600, LevelDB too', async () => {
    const root = await set.tempDir()
    const outside = join(root, 'outside.txt')
    await writeFile(outside, 'not the peer\'s\n')
    await chmod(outside, 0o644)
    const dir = join(root, 'data')
    await mkdir(join(dir, 'old'), { recursive: true })
    await chmod(dir, 0o755)
    await chmod(join(dir, 'old'), 0o755)
    await writeFile(join(dir, 'notes.txt'), 'mine\n')
    await chmod(join(dir, 'notes.txt'), 0o644)
    await writeFile(join(dir, 'old', 'kept.bin'), 'x')
    await chmod(join(dir, 'old', 'kept.bin'), 0o644)
    await symlink(outside, join(dir, 'link'))

    const init = await runCli(['init', '--data', dir])
    assert.equal(init.code, 0, init.stderr)
    assert.equal((await stat(dir)).mode & 0o777, 0o700)
    assertOwnerOnly(await modes(dir))
    // Back to 0755, so start has it to fix as well.
    await chmod(dir, 0o755)
    await chmod(join(dir, 'notes.txt'), 0o644)

    const peer = await set.start({ dataDir: dir })
    await peer.api.request('POST', '/api/v0/social/post', { text: 'written to LevelDB under the umask' })
    assert.equal((await stat(dir)).mode & 0o777, 0o700)
    const running = await modes(dir)
    assert.ok(running.some(e => e.path === join(dir, 'store') && e.kind === 'dir'), 'the store is there')
    assert.ok(running.some(e => e.path.startsWith(join(dir, 'store') + '/') && /\.log$/.test(e.path)), 'LevelDB wrote its log')
    assertOwnerOnly(running)
    assert.equal(await set.stop(peer), 0)
    assertOwnerOnly(await modes(dir))
    // The link's target, outside the data dir, is not touched.
    assert.equal((await stat(outside)).mode & 0o777, 0o644)
  })

  it('the walk stops at its bound (the dir itself is made 0700 all the same) and fixes all below it', async () => {
    assert.ok(MAX_DATA_DIR_WALK_ENTRIES >= 10_000)
    const dir = join(await set.tempDir(), 'data')
    await mkdir(join(dir, 'sub'), { recursive: true })
    for (let i = 0; i < 12; i++) await writeFile(join(dir, 'sub', `f${i}`), String(i), { mode: 0o644 })
    await chmod(join(dir, 'sub'), 0o755)
    await chmod(dir, 0o755)
    const bounded = await ownerOnlyDataDir(dir, { maxEntries: 5 })
    assert.deepEqual(bounded, { entries: 5, truncated: true })
    assert.equal((await stat(dir)).mode & 0o777, 0o700)
    const open = (await modes(dir)).filter(e => (e.mode & 0o077) !== 0)
    assert.ok(open.length > 0, 'past the bound, files were left as they were')
    const all = await ownerOnlyDataDir(dir)
    assert.deepEqual(all, { entries: 13, truncated: false })
    assertOwnerOnly(await modes(dir))
  })
})
