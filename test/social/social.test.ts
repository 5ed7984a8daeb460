/**
 * Social feeds between real `peerverse` processes on loopback: five peers follow each other and
 * every post reaches everyone; a peer offline during 100 posts catches up when it is back, even
 * with the author offline by then; a restart keeps feeds and the timeline; mute and block apply.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PeerSet, runCli, waitFor, type CliPeer } from '../helpers/cli-peer.ts'

const set = new PeerSet()

interface EntryView { id: string, author: string, seq: number, kind: string, text?: string, name?: string, attachments?: string[], cursor: string }

async function cli (p: CliPeer, ...args: string[]): Promise<string> {
  const r = await runCli([...args, '--data', p.dataDir])
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

async function timeline (p: CliPeer, limit = 200): Promise<EntryView[]> {
  const { entries } = await p.api.request<{ entries: EntryView[] }>('GET', `/api/v0/social/feed?limit=${limit}`)
  return entries
}

async function entriesOf (p: CliPeer, did: string): Promise<number> {
  const profile = await p.api.request<{ entries: number }>('GET', `/api/v0/social/profile/${encodeURIComponent(did)}`)
  return profile.entries
}

describe('social feeds across five peers', { timeout: 300_000 }, () => {
  const peers: CliPeer[] = []
  const names = ['ada', 'bo', 'cy', 'di', 'ed']

  before(async () => {
    peers.push(await set.start())
    // The other four start together, each told only the first.
    peers.push(...await Promise.all([1, 2, 3, 4].map(async () => await set.start({ bootstrap: [peers[0].addr] }))))
  })

  after(async () => { await set.cleanup() })

  it('five peers follow each other and every post reaches everyone', async () => {
    // Each peer names itself and follows the four others (its own commands in order, the peers side
    // by side): the first through the CLI, the other three through the API the CLI calls.
    await Promise.all(peers.map(async (p, i) => {
      await cli(p, 'profile', 'set', '--name', names[i])
      const [first, ...rest] = peers.filter(q => q !== p)
      await cli(p, 'follow', first.ready.did)
      for (const q of rest) await p.api.request('POST', '/api/v0/social/follow', { did: q.ready.did })
      const { following } = await p.api.request<{ following: string[] }>('GET', '/api/v0/social/following')
      assert.deepEqual([...following].sort(), peers.filter(q => q !== p).map(q => q.ready.did).sort())
    }))
    await Promise.all(peers.map(async (p, i) => await cli(p, 'post', `hello from ${names[i]}`)))
    for (const p of peers) {
      await waitFor(`${p.ready.peerId} sees all five posts`, async () => {
        const texts = new Set((await timeline(p)).map(e => e.text))
        return names.every(n => texts.has(`hello from ${n}`))
      }, 30_000)
    }
    // Names come from the authors' profile entries, replicated with their feeds.
    const seen = await timeline(peers[4])
    assert.equal(seen.find(e => e.text === 'hello from ada')?.name, 'ada')
    const r = await runCli(['feed', '--limit', '3', '--data', peers[2].dataDir])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.split('\n').filter(l => l.includes(': hello from')).length, 3)
  })

  it('a post made while a follower is online arrives live', async () => {
    const [a, b] = [peers[1], peers[3]]
    const text = `live ${Date.now()}`
    await cli(a, 'post', text)
    await waitFor('the live post arrives', async () => (await timeline(b, 5)).some(e => e.text === text), 10_000)
  })

  it('a follower offline during 100 posts catches up, also with the author offline by then', async () => {
    const [author, offline] = [peers[1], peers[4]]
    assert.equal(await set.stop(offline), 0)
    for (let i = 0; i < 100; i++) await author.api.request('POST', '/api/v0/social/post', { text: `while you were out ${i}` })
    const total = await entriesOf(author, author.ready.did)
    // Others hold the whole feed before the author leaves.
    for (const p of [peers[0], peers[2], peers[3]]) {
      await waitFor('the others hold all of it', async () => await entriesOf(p, author.ready.did) === total, 30_000)
    }
    assert.equal(await set.stop(author), 0)
    const back = await set.start({ dataDir: offline.dataDir, bootstrap: [peers[0].addr] })
    peers[4] = back
    await waitFor('the returning follower catches up from peers other than the author', async () => await entriesOf(back, author.ready.did) === total, 60_000)
    const texts = new Set((await timeline(back, 200)).map(e => e.text))
    for (let i = 0; i < 100; i++) assert.ok(texts.has(`while you were out ${i}`), `post ${i}`)
    // The restart kept what it had before: its own and others' earlier posts.
    assert.ok(texts.has('hello from ed') && texts.has('hello from ada'))
  })

  it('a post with an attachment names a CID the followers can fetch', async () => {
    const [a, b] = [peers[0], peers[2]]
    const file = join(await set.tempDir(), 'note.txt')
    await writeFile(file, 'an attached note\n')
    const entry = JSON.parse(await cli(a, 'post', 'see attached', '--attach', file, '--json')) as EntryView
    assert.equal(entry.attachments?.length, 1)
    const cid = entry.attachments![0]
    await waitFor('the post arrives', async () => (await timeline(b, 5)).some(e => e.id === entry.id), 15_000)
    const r = await b.api.raw('GET', `/content/${cid}`)
    assert.equal(r.status, 200)
    assert.equal(await r.text(), 'an attached note\n')
  })

  it('mute hides an author from the timeline; block also drops their feed', async () => {
    const [me, them] = [peers[3], peers[2]]
    await cli(me, 'mute', them.ready.did)
    assert.ok(!(await timeline(me)).some(e => e.author === them.ready.did))
    assert.ok(await entriesOf(me, them.ready.did) > 0, 'a muted feed is still held')
    await cli(me, 'unmute', them.ready.did)
    assert.ok((await timeline(me)).some(e => e.author === them.ready.did))
    await cli(me, 'block', them.ready.did)
    assert.equal(await entriesOf(me, them.ready.did), 0)
    await cli(them, 'post', 'after the block')
    // A later post from a peer we still follow arrives; the blocked author's never does.
    await cli(peers[0], 'post', 'marker after block')
    await waitFor('the marker arrives', async () => (await timeline(me, 10)).some(e => e.text === 'marker after block'), 15_000)
    assert.ok(!(await timeline(me)).some(e => e.author === them.ready.did))
    assert.equal(await entriesOf(me, them.ready.did), 0)
  })

  it('bad input from the CLI gets a clear error', async () => {
    let r = await runCli(['follow', 'did:key:nope', '--data', peers[0].dataDir])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /did:key/)
    r = await runCli(['post', 'x'.repeat(9000), '--data', peers[0].dataDir])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /over 8192 bytes/)
    r = await runCli(['feed', '--limit', 'lots', '--data', peers[0].dataDir])
    assert.equal(r.code, 2)
  })
})
