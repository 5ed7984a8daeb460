/**
 * A full disk under a real `peerverse start` process: A's data dir is on a small tmpfs, B follows
 * A. A post that cannot be saved fails with StoreWriteError (HTTP 507) and does not advance A's
 * feed; once space is freed A posts again with no restart, B receives those posts, and after a
 * restart A still holds every post it acknowledged, and B never sees a fork. SIGTERM on a full
 * disk exits 0, and a store that cannot open says why, with no stack trace.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ApiError } from '../../src/api/errors.ts'
import type { NodeStatus } from '../../src/node/node.ts'
import { cleanups } from '../helpers/cleanup.ts'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'
import { fill, mountTmpfs, unfill } from '../store/tmpfs.ts'

interface EntryView { id: string, author: string, seq: number, text?: string }

async function post (p: CliPeer, text: string): Promise<EntryView> {
  return await p.api.request<EntryView>('POST', '/api/v0/social/post', { text })
}

async function entries (p: CliPeer, did: string): Promise<EntryView[]> {
  const { entries } = await p.api.request<{ entries: EntryView[] }>('GET', `/api/v0/social/entries/${encodeURIComponent(did)}?from=1&limit=200`)
  return entries
}

async function status (p: CliPeer): Promise<NodeStatus> {
  return await p.api.request<NodeStatus>('GET', '/api/v0/status')
}

/** Posts until one fails; returns the posts acknowledged before it and the error. */
async function postUntilRefused (p: CliPeer, prefix: string, acked: EntryView[]): Promise<ApiError> {
  for (let i = 0; i < 2000; i++) {
    try {
      acked.push(await post(p, `${prefix} ${i} `.padEnd(7000, '.')))
    } catch (err) {
      return err as ApiError
    }
  }
  assert.fail('no post failed on a full disk')
}

describe('social on a full disk, real processes', { timeout: 300_000 }, () => {
  it('a post that cannot be saved fails with 507 and no seq; posts after space returns reach the follower and survive a restart; no fork', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 32)
    if (mnt == null) return
    const set = new PeerSet()
    defer(async () => set.cleanup())
    const dirA = join(mnt, 'a')
    await mkdir(dirA)
    // No ballast: its room would let the store reopen while the disk is still full (the store's own test covers that).
    await writeFile(join(dirA, 'config.json'), JSON.stringify({ store: { ballastBytes: 0 } }))
    let a = await set.start({ dataDir: dirA })
    const b = await set.start({ bootstrap: [a.addr] })
    const didA = a.ready.did
    await b.api.request('POST', '/api/v0/social/follow', { did: didA })
    const acked: EntryView[] = [await post(a, 'one')]
    await waitFor('B holds #1', async () => (await entries(b, didA)).length === 1)

    await fill(join(mnt, 'filler'))
    const err = await postUntilRefused(a, 'filling', acked)
    assert.equal(err.status, 507)
    assert.equal(err.code, 'StoreWriteError')
    const stuck = await status(a)
    assert.equal(stuck.store.writable, false)
    assert.equal(stuck.store.lastError?.code, 'ENOSPC')
    await assert.rejects(post(a, 'refused'), { status: 507, code: 'StoreWriteError' })
    // The feed did not advance past what was acknowledged.
    const profile = await a.api.request<{ entries: number }>('GET', `/api/v0/social/profile/${encodeURIComponent(didA)}`)
    assert.equal(profile.entries, acked.length)
    assert.deepEqual(acked.map(e => e.seq), acked.map((_, i) => i + 1))

    await unfill(join(mnt, 'filler'))
    await waitFor('A accepts writes again', async () => (await status(a)).store.writable, 60_000)
    const two = await post(a, 'after space returned 1')
    const three = await post(a, 'after space returned 2')
    acked.push(two, three)
    assert.equal(two.seq, acked.length - 1)
    assert.equal(three.seq, acked.length)
    await waitFor('B holds every acknowledged post', async () => (await entries(b, didA)).length === acked.length, 60_000)

    assert.equal(await set.stop(a), 0)
    a = await set.start({ dataDir: dirA, bootstrap: [b.addr] })
    const held = await entries(a, didA)
    assert.deepEqual(held.map(e => e.id), acked.map(e => e.id), 'A holds every post it acknowledged after a restart')
    const next = await post(a, 'after the restart')
    assert.equal(next.seq, acked.length + 1)
    await waitFor('B holds the post after the restart', async () => (await entries(b, didA)).length === acked.length + 1, 60_000)
    const lists = await b.api.request<{ forked: string[] }>('GET', '/api/v0/social/lists')
    assert.deepEqual(lists.forked, [])
  })

  it('SIGTERM while the disk is full and the store refuses writes exits 0', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 32)
    if (mnt == null) return
    const set = new PeerSet()
    defer(async () => set.cleanup())
    const dir = join(mnt, 'a')
    await mkdir(dir)
    await writeFile(join(dir, 'config.json'), JSON.stringify({ store: { ballastBytes: 0 } }))
    const a = await set.start({ dataDir: dir })
    await post(a, 'one')
    await fill(join(mnt, 'filler'))
    const err = await postUntilRefused(a, 'filling', [])
    assert.equal(err.status, 507)
    assert.equal((await status(a)).store.writable, false)
    // The warning and the refusal are shown on stderr and by `peerverse status`.
    const shown = await runCli(['status', '--data', dir])
    assert.equal(shown.code, 0, shown.stderr)
    assert.match(shown.stdout, /store: +REFUSING WRITES/)
    assert.match(shown.stdout, /last error: no space left/)
    assert.match(shown.stdout, /warning: low disk, below 1\.0 GiB free/)
    assert.match(a.stderr(), /low disk: .* free for .*warning below 1\.0 GiB/)
    assert.match(a.stderr(), /the store is refusing writes until it has repaired itself: no space left/)
    assert.equal(await set.stop(a), 0, a.stderr())
    assert.doesNotMatch(a.stderr(), /LEVEL_IO_ERROR|\n\s+at /)
    // It closed cleanly: with space back the same data dir starts and holds the post.
    await unfill(join(mnt, 'filler'))
    const again = await set.start({ dataDir: dir })
    assert.deepEqual((await entries(again, again.ready.did)).map(e => e.text), ['one'])
  })

  it('a store that cannot open: peerverse start names the cause and exits non-zero, with no stack trace', async t => {
    const defer = cleanups(t)
    const mnt = await mountTmpfs(t, defer, 32)
    if (mnt == null) return
    const dir = join(mnt, 'a')
    const init = await runCli(['init', '--data', dir])
    assert.equal(init.code, 0, init.stderr)
    await writeFile(join(dir, 'config.json'), JSON.stringify({ store: { ballastBytes: 0 } }))
    await fill(join(mnt, 'filler'))
    const r = await runCli(['start', '--data', dir, '--api', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0', '--no-mdns'])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /no space left/)
    assert.match(r.stderr, /Free some space/)
    assert.doesNotMatch(r.stderr, /\n\s+at |Database failed to open$/m)
  })
})
