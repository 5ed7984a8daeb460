/**
 * What a peer keeps of the spaces it has joined, in its LevelDB sublevel:
 *   s/<id>            descriptor bytes
 *   p/<id>            latest policy bytes
 *   k/<id>/<epoch>    key envelopes sealed to us (private spaces), by epoch
 *   j/<id>            our membership: display name and avatar (present while joined)
 *   a/<id>            our admission proof for the space (admission.ts): {did, nonce}
 *   c/<id>/<ts>/<cid> chat records of known authors, n/<id>/<ts>/<cid> of newcomers (history.ts
 *                     decides what is kept; the store deletes what it evicts)
 *   w/<id>/<n>        accepted world-update records in acceptance order (replayed at start)
 * Chat and world records of a private space are stored sealed under its group key (the caller
 * seals them); the rest in the clear. Writes that acknowledge a user's action (create, say, world
 * edits) are synced to disk.
 */
import { KeyedLock } from '../store/keyed-lock.ts'
import type { BytesSublevel } from '../store/store.ts'
import type { ChatArea } from './history.ts'

export { MAX_CHAT_HISTORY } from './history.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()

export interface Membership { name: string, avatar: string, joined: number }

function pad (n: number, width = 16): string {
  return n.toString().padStart(width, '0')
}

/** Where a chat record is stored: its part of the history, time and id. */
export interface ChatKey { area: ChatArea, ts: number, id: string }

function chatKey (space: string, c: ChatKey): string {
  return `${c.area === 'known' ? 'c' : 'n'}/${space}/${pad(c.ts)}/${c.id}`
}

export class SpaceStore {
  private readonly db: BytesSublevel
  private readonly worldCount = new Map<string, number>()
  private readonly appends = new KeyedLock()

  constructor (db: BytesSublevel) {
    this.db = db
  }

  async get (kind: 's' | 'p' | 'k' | 'a', id: string): Promise<Uint8Array | undefined> {
    return await this.db.get(`${kind}/${id}`)
  }

  async put (kind: 's' | 'p' | 'k' | 'a', id: string, bytes: Uint8Array, sync = false): Promise<void> {
    await this.db.put(`${kind}/${id}`, bytes, { sync } as Record<string, unknown>)
  }

  async setMembership (id: string, m: Membership | null): Promise<void> {
    if (m == null) await this.db.del(`j/${id}`, { sync: true } as Record<string, unknown>)
    else await this.db.put(`j/${id}`, enc.encode(JSON.stringify(m)), { sync: true } as Record<string, unknown>)
  }

  async memberships (): Promise<Map<string, Membership>> {
    const out = new Map<string, Membership>()
    for await (const [k, v] of this.db.iterator({ gte: 'j/', lt: 'j0' })) {
      try { out.set(k.slice(2), JSON.parse(dec.decode(v)) as Membership) } catch {}
    }
    return out
  }

  /** Descriptor ids we hold. */
  async spaces (): Promise<string[]> {
    const out: string[] = []
    for await (const k of this.db.keys({ gte: 's/', lt: 's0' })) out.push(k.slice(2))
    return out
  }

  /** Stores a chat record in its part and deletes the ones the history evicted for it, in one batch. */
  async addChat (id: string, chat: ChatKey & { bytes: Uint8Array }, evicted: ChatKey[] = [], sync = false): Promise<void> {
    await this.db.batch([
      { type: 'put' as const, key: chatKey(id, chat), value: chat.bytes },
      ...evicted.map(e => ({ type: 'del' as const, key: chatKey(id, e) }))
    ], { sync } as Record<string, unknown>)
  }

  /** The stored chat records of a space, known authors' first, each in (ts, id) order. */
  async chat (id: string): Promise<Array<{ area: ChatArea, bytes: Uint8Array }>> {
    const out: Array<{ area: ChatArea, bytes: Uint8Array }> = []
    for (const area of ['known', 'new'] as const) {
      const p = area === 'known' ? 'c' : 'n'
      for await (const v of this.db.values({ gte: `${p}/${id}/`, lt: `${p}/${id}0` })) out.push({ area, bytes: v })
    }
    return out
  }

  /** Appends an accepted world record; appends to one space run one at a time, so none overwrites another. */
  async addWorld (id: string, bytes: Uint8Array, sync = false): Promise<void> {
    await this.appends.run(id, async () => {
      let n = this.worldCount.get(id)
      if (n == null) {
        n = 0
        for await (const k of this.db.keys({ gte: `w/${id}/`, lt: `w/${id}0`, reverse: true, limit: 1 })) n = Number(k.slice(k.lastIndexOf('/') + 1)) + 1
      }
      await this.db.put(`w/${id}/${pad(n)}`, bytes, { sync } as Record<string, unknown>)
      this.worldCount.set(id, n + 1)
    })
  }

  /** Key envelopes held for a space: [epoch, bytes], oldest first. */
  async envelopes (id: string): Promise<Array<[number, Uint8Array]>> {
    const out: Array<[number, Uint8Array]> = []
    for await (const [k, v] of this.db.iterator({ gte: `k/${id}/`, lt: `k/${id}0` })) out.push([Number(k.slice(k.lastIndexOf('/') + 1)), v])
    return out.sort((a, b) => a[0] - b[0])
  }

  async *world (id: string): AsyncGenerator<Uint8Array> {
    for await (const v of this.db.values({ gte: `w/${id}/`, lt: `w/${id}0` })) yield v
  }
}
