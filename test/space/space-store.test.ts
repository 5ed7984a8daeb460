/**
 * The space store: concurrent appends of world records all land (none overwrites another), chat
 * history is trimmed to MAX_CHAT_HISTORY, and key envelopes are listed by epoch.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Store } from '../../src/store/store.ts'
import { MAX_CHAT_HISTORY, SpaceStore } from '../../src/space/store.ts'

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

  it('trims chat past MAX_CHAT_HISTORY, dropping the oldest', async () => {
    const { store, spaces } = await open()
    try {
      for (let i = 0; i < MAX_CHAT_HISTORY + 5; i++) await spaces.addChat('s1', 1000 + i, `c${i}`, new Uint8Array([i & 0xff]))
      const chat = await spaces.chat('s1')
      assert.equal(chat.length, MAX_CHAT_HISTORY)
      assert.equal(chat[0][0], 5)
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
