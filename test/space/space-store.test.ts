/**
 * The space store: concurrent appends of world records all land (none overwrites another), chat
 * records are kept by part (known authors, newcomers) and deleted as the history evicts them, and
 * key envelopes are listed by epoch.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Store } from '../../src/store/store.ts'
import { SpaceStore } from '../../src/space/store.ts'

const dirs: string[] = []
after(async () => { for (const d of dirs) await rm(d, { recursive: true, force: true }) })

async function open (): Promise<{ store: Store, spaces: SpaceStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'peerverse-space-store-'))
  dirs.push(dir)
  const store = await Store.open(dir)
  return { store, spaces: new SpaceStore(store.sublevel('space')) }
}

describe('space store', () => {
  it('keeps every world record appended at once, in order of appending', async () => {
    const { store, spaces } = await open()
    try {
      await Promise.all(Array.from({ length: 50 }, async (_v, i) => { await spaces.addWorld('s1', new Uint8Array([i])) }))
      const got: number[] = []
      for await (const b of spaces.world('s1')) got.push(b[0])
      assert.deepEqual(got, Array.from({ length: 50 }, (_v, i) => i))
      // After a restart the numbering continues past what is on disk.
      await store.close()
      const reopened = await Store.open(dirs[dirs.length - 1])
      try {
        const again = new SpaceStore(reopened.sublevel('space'))
        await again.addWorld('s1', new Uint8Array([200]))
        const all: number[] = []
        for await (const b of again.world('s1')) all.push(b[0])
        assert.equal(all.length, 51)
        assert.equal(all[50], 200)
      } finally {
        await reopened.close()
      }
    } finally {
      await store.close()
    }
  })

  it('keeps chat by part, known authors first, and deletes what the history evicted in the same batch', async () => {
    const { store, spaces } = await open()
    try {
      for (let i = 0; i < 6; i++) await spaces.addChat('s1', { area: i % 2 === 0 ? 'known' : 'new', ts: 1000 + i, id: `c${i}`, bytes: new Uint8Array([i]) })
      await spaces.addChat('s1', { area: 'new', ts: 2000, id: 'c9', bytes: new Uint8Array([9]) }, [{ area: 'known', ts: 1000, id: 'c0' }, { area: 'new', ts: 1001, id: 'c1' }])
      await spaces.addChat('s10', { area: 'known', ts: 1, id: 'x', bytes: new Uint8Array([99]) })
      const chat = await spaces.chat('s1')
      assert.deepEqual(chat.map(c => [c.area, c.bytes[0]]), [['known', 2], ['known', 4], ['new', 3], ['new', 5], ['new', 9]])
    } finally {
      await store.close()
    }
  })

  it('lists key envelopes by epoch', async () => {
    const { store, spaces } = await open()
    try {
      for (const e of [10, 2, 1]) await spaces.put('k', `s1/${e}`, new Uint8Array([e]))
      await spaces.put('k', 's10/1', new Uint8Array([99]))
      assert.deepEqual((await spaces.envelopes('s1')).map(([e]) => e), [1, 2, 10])
    } finally {
      await store.close()
    }
  })
})
